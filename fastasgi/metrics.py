"""Prometheus metrics (``--metrics-port``): the counter layout, its storage, and the scrape side.

Recording is split from exposition so that the per-request cost stays a few C
additions:

* every server process records into one fixed block of ``SIZE`` int64 slots (the
  layout is the constants below).  The compiled HTTP protocol
  (``fastasgi._speedups.http_c``) holds the block as a typed memoryview and adds to
  its slots inline; the pure-Python protocol and the WebSocket protocols do the same
  through a ``memoryview`` (one Python operation each);
* only a scrape turns the numbers into Prometheus metric families, through a custom
  ``prometheus_client`` collector (:class:`Collector`), and ``prometheus_client``
  writes the text format and serves it (:func:`serve`).  ``prometheus_client`` is
  imported there, i.e. only when ``--metrics-port`` is given.

One process (no ``--workers``): the block lives in private memory and the process
serves the scrapes itself, from a thread.  Under ``--workers N`` (and ``--reload``)
the supervisor creates one block per worker *process* in a memory-mapped file,
passes its path to the worker, sums the blocks of the live workers at scrape time
and serves the scrapes (:class:`Aggregate`).  When a worker is gone (stopped,
crashed, killed, replaced) the supervisor reads its block one last time, adds its
counters to a "retired" total and drops its gauges; that happens exactly once, when
the supervisor reaps the process, under the same lock as a scrape, so a replaced
worker's counts are neither lost nor counted twice.  Why not
``prometheus_client``'s multiprocess mode: it keeps one file per metric and process
and needs an environment variable set before the workers import anything, and it
does not free the files of dead workers by itself; a fixed block per worker is
smaller, and a worker's death is a single fold.

A leaf below the protocols (they import the slot numbers from here); it imports
nothing from fastasgi.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import struct
import threading
from typing import Any, Callable

logger = logging.getLogger("uvicorn.error")

# -- the layout (label values and slot numbers) ----------------------------------------------

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
# upper bounds (seconds) of the request-duration buckets: prometheus_client's defaults
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
BUCKETS_NS = tuple(round(b * 1e9) for b in BUCKETS)
N_BUCKETS = len(BUCKETS)  # the slot after the last bound is +Inf
# what the HTTP parser refuses, by its status (400, 414, 431, 413), and a WebSocket
# handshake that fails RFC 6455 §4.2.1 (400, 426)
PARSE_ERROR_KINDS = ("malformed", "request_line_too_long", "headers_too_large", "body_too_large", "websocket_handshake")
PARSE_MALFORMED, PARSE_LINE_TOO_LONG, PARSE_HEADERS_TOO_LARGE, PARSE_BODY_TOO_LARGE, PARSE_WS_HANDSHAKE = range(5)
TIMEOUT_KINDS = ("request_header", "request_body", "keep_alive", "websocket_ping", "websocket_close", "response_body")
TIMEOUT_HEADER, TIMEOUT_BODY, TIMEOUT_KEEP_ALIVE, TIMEOUT_WS_PING, TIMEOUT_WS_CLOSE, TIMEOUT_RESPONSE_BODY = range(6)

# gauges: a worker's current value; dropped, not summed, once the worker is gone
REQUESTS_IN_FLIGHT = 0
CONNECTIONS_OPEN = 1
WS_OPEN = 2
N_GAUGES = 3
# counters
CONNECTIONS = 3
WS_CONNECTIONS = 4
WS_RECEIVED = 5
WS_SENT = 6
BYTES_IN = 7
BYTES_OUT = 8
DURATION_NS = 9  # sum of the request durations, in nanoseconds
PARSE_ERRORS = 10  # + kind
TIMEOUTS = PARSE_ERRORS + len(PARSE_ERROR_KINDS)  # + kind
REQUESTS = TIMEOUTS + len(TIMEOUT_KINDS)  # + method index * N_CLASSES + status class index
N_CLASSES = len(STATUS_CLASSES)
HISTOGRAM = REQUESTS + len(METHODS) * N_CLASSES  # + bucket index (non-cumulative counts)
SIZE = HISTOGRAM + N_BUCKETS + 1

_BLOCK = struct.Struct(f"={SIZE}q")


def parse_error_kind(status: int) -> int:
    """The kind of a request the parser refused with ``status``."""
    if status == 414:
        return PARSE_LINE_TOO_LONG
    if status == 431:
        return PARSE_HEADERS_TOO_LARGE
    if status == 413:
        return PARSE_BODY_TOO_LARGE
    return PARSE_MALFORMED


# -- storage -------------------------------------------------------------------------------------


def private_block() -> memoryview:
    """The block of a process that serves its own scrapes (no supervisor)."""
    return memoryview(bytearray(_BLOCK.size)).cast("q")


def attach_block(path: str) -> memoryview:
    """A worker's view of the block its supervisor created at ``path`` (kept mapped until exit)."""
    with open(path, "r+b") as f:
        mm = mmap.mmap(f.fileno(), _BLOCK.size)
    return memoryview(mm).cast("q")


class Aggregate:
    """The supervisor's side: one block per worker process, the retired total, the worker counts."""

    def __init__(self, workers: bool) -> None:
        self.workers = workers  # expose the worker families (--workers, not --reload)
        import tempfile  # (stdlib modules only a supervisor with --metrics-port needs)

        self.lock = threading.Lock()
        self.dir = tempfile.mkdtemp(prefix="fastasgi-metrics-")
        self.live: dict[str, mmap.mmap] = {}
        self.retired = [0] * SIZE
        self.seq = 0
        self.worker_starts = 0
        self.worker_exits = 0
        self.worker_restarts = 0

    def new_block(self, restart: bool = False) -> str:
        """A zeroed block for a worker about to be started; its path is passed to the worker."""
        self.seq += 1
        path = os.path.join(self.dir, f"worker-{self.seq}")
        with open(path, "w+b") as f:
            f.truncate(_BLOCK.size)
            mm = mmap.mmap(f.fileno(), _BLOCK.size)
        with self.lock:
            self.live[path] = mm
            self.worker_starts += 1
            if restart:
                self.worker_restarts += 1
        return path

    def retire(self, path: str | None) -> None:
        """The worker of ``path`` is gone: keep its counters, drop its gauges (once per block)."""
        if path is None:
            return
        with self.lock:
            mm = self.live.pop(path, None)
            if mm is None:
                return
            values = _BLOCK.unpack_from(mm)
            retired = self.retired
            for i in range(N_GAUGES, SIZE):
                retired[i] += values[i]
            self.worker_exits += 1
        mm.close()
        with contextlib.suppress(OSError):
            os.unlink(path)

    def totals(self) -> tuple[list[int], dict[str, int] | None]:
        with self.lock:
            total = list(self.retired)
            for mm in self.live.values():
                values = _BLOCK.unpack_from(mm)
                for i in range(SIZE):
                    total[i] += values[i]
            workers = None
            if self.workers:
                workers = {
                    "starts": self.worker_starts,
                    "exits": self.worker_exits,
                    "restarts": self.worker_restarts,
                    "live": len(self.live),
                }
        return total, workers

    def close(self) -> None:
        with self.lock:
            blocks = list(self.live.values())
            self.live.clear()
        for mm in blocks:
            mm.close()
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


# -- scrape ----------------------------------------------------------------------------------------


class Collector:
    """A ``prometheus_client`` collector: the families of one set of totals, built at scrape time."""

    def __init__(self, source: Callable[[], tuple[list[int], dict[str, int] | None]]) -> None:
        self.source = source

    def describe(self) -> list[Any]:
        return []  # not checked for clashes at registration: the registry is ours alone

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        v, workers = self.source()
        requests = CounterMetricFamily(
            "fastasgi_requests",
            "HTTP requests answered, by method and status class.",
            labels=("method", "status"),
        )
        for m, method in enumerate(METHODS):
            for c, status_class in enumerate(STATUS_CLASSES):
                requests.add_metric((method, status_class), v[REQUESTS + m * N_CLASSES + c])
        yield requests

        buckets = []
        cumulative = 0
        for i, bound in enumerate(BUCKETS):
            cumulative += v[HISTOGRAM + i]
            buckets.append((_le(bound), cumulative))
        cumulative += v[HISTOGRAM + N_BUCKETS]
        buckets.append(("+Inf", cumulative))
        yield HistogramMetricFamily(
            "fastasgi_request_duration_seconds",
            "Time from a request's complete head to the end of its response.",
            buckets=buckets,
            sum_value=v[DURATION_NS] / 1e9,
        )
        yield GaugeMetricFamily(
            "fastasgi_requests_in_flight", "HTTP requests whose response is not complete.", v[REQUESTS_IN_FLIGHT]
        )
        yield CounterMetricFamily("fastasgi_connections", "Connections accepted.", v[CONNECTIONS])
        yield GaugeMetricFamily(
            "fastasgi_connections_open", "Connections open (HTTP and WebSocket).", v[CONNECTIONS_OPEN]
        )
        yield CounterMetricFamily(
            "fastasgi_websocket_connections", "WebSocket connections accepted (101 sent).", v[WS_CONNECTIONS]
        )
        yield GaugeMetricFamily("fastasgi_websocket_connections_open", "WebSocket connections open.", v[WS_OPEN])
        messages = CounterMetricFamily(
            "fastasgi_websocket_messages", "WebSocket data messages, by direction.", labels=("direction",)
        )
        messages.add_metric(("received",), v[WS_RECEIVED])
        messages.add_metric(("sent",), v[WS_SENT])
        yield messages
        yield CounterMetricFamily("fastasgi_received_bytes", "Bytes received from clients.", v[BYTES_IN])
        yield CounterMetricFamily("fastasgi_sent_bytes", "Bytes sent to clients.", v[BYTES_OUT])
        errors = CounterMetricFamily(
            "fastasgi_parse_errors", "Requests refused as invalid or too large, by kind.", labels=("kind",)
        )
        for k, kind in enumerate(PARSE_ERROR_KINDS):
            errors.add_metric((kind,), v[PARSE_ERRORS + k])
        yield errors
        timeouts = CounterMetricFamily(
            "fastasgi_timeouts", "Connections closed by a timeout, by kind.", labels=("kind",)
        )
        for k, kind in enumerate(TIMEOUT_KINDS):
            timeouts.add_metric((kind,), v[TIMEOUTS + k])
        yield timeouts
        if workers is not None:
            yield CounterMetricFamily("fastasgi_worker_starts", "Worker processes started.", workers["starts"])
            yield CounterMetricFamily("fastasgi_worker_exits", "Worker processes that exited.", workers["exits"])
            yield CounterMetricFamily(
                "fastasgi_worker_restarts",
                "Worker processes started to replace another (after a crash, SIGHUP or --limit-max-requests).",
                workers["restarts"],
            )
            yield GaugeMetricFamily("fastasgi_workers", "Worker processes running.", workers["live"])


def _le(bound: float) -> str:
    return repr(float(bound))


class Listener:
    """The metrics HTTP server (``prometheus_client``'s, in a daemon thread); ``close()`` stops it."""

    def __init__(self, httpd: Any, thread: threading.Thread) -> None:
        self.httpd = httpd
        self.thread = thread

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def serve(host: str, port: int, source: Callable[[], tuple[list[int], dict[str, int] | None]]) -> Listener:
    """Serve ``/metrics`` on ``host:port`` from a thread; OSError when it cannot bind."""
    from prometheus_client import CollectorRegistry, start_http_server

    # a registry of our own: the default one would add this process's own process_* and
    # python_* metrics, which under --workers describe the supervisor, not the server
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(source))
    httpd, thread = start_http_server(port, addr=host, registry=registry)
    listener = Listener(httpd, thread)
    shown = f"[{host}]" if ":" in host else host
    logger.info("Metrics on http://%s:%d/metrics", shown, listener.port)
    return listener


def local_source(block: memoryview) -> Callable[[], tuple[list[int], None]]:
    """The scrape source of a single process: its own block."""
    return lambda: (block.tolist(), None)
