"""In-process driver of the HTTP protocol: user-space cost per request, without sockets.

Feeds requests to ``HttpProtocol.data_received`` through a fake transport and runs
the event loop until every response is written, so the number printed is the
per-request cost of fastasgi's own code (parser, scope, task, app, framing) with
no kernel in it.  Useful for A/B work on the hot path; the end-to-end truth is
``bench/run.py``.

    python3 bench/inproc.py --impl c --app plaintext --requests 200000
    python3 bench/inproc.py --access-log                   # access log on, written to os.devnull
    python3 bench/inproc.py --metrics                      # --metrics-port's counters recorded
    python3 bench/inproc.py --access-log --server uvicorn  # uvicorn's protocol, same driver

With ``--access-log`` the default logging configuration runs (formatters and
handlers included) with its handlers writing to ``os.devnull``, so the cost of
producing each access line is in the number.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import fake_transport
from fastasgi import _speedups, metrics
from fastasgi.config import LOGGING_CONFIG, Config
from fastasgi.server import ServerState

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"


class FakeTransport(fake_transport.FakeTransport):
    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.target = 0
        self.waiter: asyncio.Future | None = None

    def write(self, data: bytes) -> None:
        self.written += 1
        # wakes the driver once the batch is answered: the driver costs one wake-up
        # per batch whichever loop iteration the responses are written in
        waiter = self.waiter
        if waiter is not None and self.written >= self.target:
            self.waiter = None
            waiter.set_result(None)


def devnull_logging(base: dict) -> dict:
    """``base`` (a dictConfig dict) with every handler writing to os.devnull instead of stdout/stderr."""
    config = copy.deepcopy(base)
    for handler in config["handlers"].values():
        handler.pop("stream", None)
        handler["class"] = "logging.FileHandler"
        handler["filename"] = os.devnull
    return config


def make_protocol(args: argparse.Namespace, app) -> object:
    logging_kwargs: dict = {"log_config": None, "access_log": False}
    if args.access_log:
        logging_kwargs = {"access_log": True, "use_colors": False}
    if args.server == "uvicorn":
        import uvicorn.config
        import uvicorn.server

        if args.access_log:
            logging_kwargs["log_config"] = devnull_logging(uvicorn.config.LOGGING_CONFIG)
        config = uvicorn.Config(
            app, http="httptools" if args.impl == "c" else "h11", lifespan="off", loop="none", **logging_kwargs
        )
        config.load()
        return config.http_protocol_class(config=config, server_state=uvicorn.server.ServerState(), app_state={})
    if args.access_log:
        logging_kwargs["log_config"] = devnull_logging(LOGGING_CONFIG)
    for name in ("access_log_format", "log_format"):
        if getattr(args, name) is not None:
            logging_kwargs[name] = getattr(args, name)
    config = Config(app, http="httptools" if args.impl == "c" else "h11", lifespan="off", **logging_kwargs)
    config.load()
    state = ServerState()
    if args.metrics:
        # what Server.startup does for --metrics-port (the scrape side costs nothing per request)
        state.metrics = metrics.private_block()
    return _speedups.load(args.impl).http.HttpProtocol(config=config, server_state=state, app_state={})


async def drive(args: argparse.Namespace, n: int, batch: int) -> float:
    from bench import apps

    proto = make_protocol(args, getattr(apps, args.app))
    transport = FakeTransport()
    proto.connection_made(transport)
    loop = asyncio.get_running_loop()
    data = REQUEST * batch
    t0 = time.perf_counter()
    sent = 0
    while sent < n:
        sent += batch
        transport.target = sent
        transport.waiter = waiter = loop.create_future()
        loop.call_soon(proto.data_received, data)  # as a transport does: from a loop callback
        await waiter  # (the whole run is bounded by main's timer)
        if transport.closed:
            raise SystemExit("the protocol closed the connection (see the error above)")
    dt = time.perf_counter() - t0
    proto.connection_lost(None)
    return dt / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", default="c")
    ap.add_argument("--app", default="plaintext")
    ap.add_argument("--requests", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=1, help="requests per data_received (pipelining)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--server", choices=["fastasgi", "uvicorn"], default="fastasgi")
    ap.add_argument("--access-log", action="store_true", help="access log on (written to os.devnull)")
    ap.add_argument("--access-log-format", default=None, help="fastasgi's --access-log-format")
    ap.add_argument("--log-format", default=None, help="fastasgi's --log-format (text or json)")
    ap.add_argument("--metrics", action="store_true", help="record --metrics-port's counters")
    args = ap.parse_args()
    import threading

    import uvloop

    # bounded: a protocol that stops answering ends the run instead of hanging it
    watchdog = threading.Timer(600, lambda: os._exit(3))
    watchdog.daemon = True
    watchdog.start()

    best = min(uvloop.run(drive(args, args.requests, args.batch)) for _ in range(args.repeat))
    log = (" access-log" if args.access_log else "") + (" metrics" if args.metrics else "")
    print(
        f"{args.server} {args.impl} {args.app} batch={args.batch}{log}: {best:.2f} us/request (best of {args.repeat})"
    )


if __name__ == "__main__":
    main()
