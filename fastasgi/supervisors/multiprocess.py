"""``--workers N``: a parent process that binds the sockets and supervises N spawned workers.

The parent never serves requests.  It binds the listening socket (or, with
``--reuse-port``, one SO_REUSEPORT socket per worker *slot*), spawns the workers with
the ``spawn`` start method and then runs one event loop over the workers' pipes, their
process sentinels and a signal wake-up socket:

* a worker that dies is replaced (same slot);
* a worker that does not answer a health-check ping within
  ``--timeout-worker-healthcheck`` is killed, then replaced;
* a worker that fails before it is ready (exit status 3: app import error, lifespan
  failure...) at start-up or as the replacement of a dead worker stops the whole
  server with exit status 3 -- the failure would repeat on every respawn;
* SIGHUP replaces the workers one at a time, each replacement ready (lifespan done,
  accepting) before the worker it replaces is asked to stop; the same path replaces a
  worker that reached ``--limit-max-requests`` (it asks over the pipe and keeps serving
  until its replacement is ready), so retirements are serialized, never all at once;
* the same path recycles a worker whose resident memory exceeds ``--limit-max-rss`` or
  that has served for ``--limit-max-lifetime`` (see :meth:`Multiprocess.check_recycling`);
* SIGTTIN / SIGTTOU add / remove one worker;
* SIGINT / SIGTERM stop every worker gracefully, then the parent re-raises the signal
  as a single server does (``timeout_graceful_shutdown`` bounds the wait);
* under systemd (``NOTIFY_SOCKET``) the parent is the service's main process and
  reports its state (:mod:`fastasgi.systemd`): ``READY=1`` once every initial worker
  is ready, ``RELOADING=1`` when a SIGHUP rolling restart begins and ``READY=1`` again
  when it is over, ``STATUS=`` with the number of ready workers, ``STOPPING=1``, and
  ``WATCHDOG=1`` from this loop when the unit sets ``WatchdogSec=``;
* with ``--metrics-port`` the parent serves the scrapes: each worker process records
  into a counter block of its own, which the parent sums with the counters of the
  workers that are gone (:class:`fastasgi.metrics.Aggregate`; a worker's block is
  folded in when the parent reaps it, exactly once).

Why no request is lost when a worker is replaced: the listening socket lives in the
parent for the server's whole life, so connections queued in its backlog survive any
worker -- the next accept() of a live worker takes them.  A stopping worker first
closes only its own copy of the socket, then drains (see
:mod:`fastasgi.supervisors.worker`).  With ``--reuse-port`` each slot keeps its socket
across the replacements of its worker for the same reason.  The one case that can
still reset a queued connection is SIGTTOU with ``--reuse-port``: the removed slot's
socket is closed, and Linux resets what is queued on it unless
``net.ipv4.tcp_migrate_req=1`` (Linux >= 5.14) migrates it to the other sockets.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import random
import signal
import socket
import sys
import time
from typing import Any, Callable

from fastasgi.config import Config
from fastasgi.errors import STARTUP_FAILURE, ConfigError
from fastasgi.metrics import Aggregate, Listener, serve
from fastasgi.server import Server
from fastasgi.sockets import bind_reuseport_socket, bind_sockets, listener_plan, remove_unix_binds
from fastasgi.supervisors.worker import exit_description, share_listeners, worker_main
from fastasgi.systemd import Notifier

logger = logging.getLogger("uvicorn.error")

# sockets and pipe ends travel to spawned children as duplicated file descriptors
multiprocessing.allow_connection_pickling()
spawn = multiprocessing.get_context("spawn")

SUPERVISOR_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGTTIN", "SIGTTOU") if hasattr(signal, name)
)

# worker states
STARTING = "starting"
READY = "ready"
STOPPING = "stopping"

HEALTHCHECK_INTERVAL = 1.0  # seconds between two pings of one worker (or the timeout, if smaller)
RECYCLE_INTERVAL = 1.0  # seconds between two looks at the workers' RSS and age
RECYCLE_RETRY = 30.0  # seconds without recycling after a replacement failed to start
MIB = 1024 * 1024
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _proc_rss(pid: int) -> int | None:
    # /proc/<pid>/statm: "size resident shared ..." in pages; one small read, no parsing of status
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None  # the process is gone


def _psutil_rss(pid: int) -> int | None:
    import psutil

    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None


def rss_reader() -> Callable[[int], int | None] | None:
    """How this platform reads a process's resident set size in bytes: /proc, else psutil, else None."""
    if os.path.exists(f"/proc/{os.getpid()}/statm"):
        return _proc_rss
    try:
        import psutil  # noqa: F401  (optional: only where there is no /proc, e.g. macOS)
    except ImportError:
        return None
    return _psutil_rss


class WorkerProcess:
    """One spawned worker, seen from the parent."""

    def __init__(
        self,
        config: Config,
        sockets: list[socket.socket],
        slot: int,
        reason: str,
        drain: bool = True,
        metrics: Aggregate | None = None,
    ) -> None:
        self.slot = slot
        # why it was started: "initial", "respawn", "restart", "scale"; a "restart" or
        # "scale" worker that fails to start is not fatal (the running workers stay)
        self.reason = reason
        self.replaces: WorkerProcess | None = None
        self.state = STARTING
        self.hello = False
        self.ping_seq = 0
        self.ping_sent_at: float | None = None
        self.last_pong = time.monotonic()
        self.stop_deadline: float | None = None
        self.health_killed = False
        # recycling: this worker's own limits (each with its jitter drawn once), its start of service
        self.ready_at: float | None = None
        self.max_rss: int | None = None  # bytes
        if config.limit_max_rss is not None:
            self.max_rss = (config.limit_max_rss + random.randint(0, config.limit_max_rss_jitter)) * MIB
        self.max_lifetime: float | None = None
        if config.limit_max_lifetime is not None:
            self.max_lifetime = config.limit_max_lifetime + random.uniform(0, config.limit_max_lifetime_jitter)
        self.metrics = metrics
        self.metrics_path = None if metrics is None else metrics.new_block(restart=reason in ("respawn", "restart"))
        self.conn, child_conn = spawn.Pipe(duplex=True)
        self.process = spawn.Process(
            target=worker_main,
            args=(config, share_listeners(sockets), child_conn, drain, self.metrics_path),
            name=f"fastasgi-worker-{slot}",
        )
        self.process.start()
        child_conn.close()  # the child has its own copy; ours would hide a dead parent from it (EOF)
        self.pid: int = self.process.pid or 0
        self.exitcode: int | None = None

    @property
    def alive(self) -> bool:
        if self.exitcode is None:
            self.exitcode = self.process.exitcode
        return self.exitcode is None

    def send(self, message: tuple[Any, ...]) -> None:
        with contextlib.suppress(OSError, EOFError, ValueError):
            self.conn.send(message)

    def stop(self, deadline: float | None) -> None:
        """Ask for a graceful stop (SIGTERM)."""
        if self.state == STOPPING:
            return
        self.state = STOPPING
        self.stop_deadline = deadline
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def close(self) -> None:
        self.process.join(5)
        if self.metrics is not None:
            # the parent reaps each worker once (reap / shutdown_all): its counters are
            # folded into the retired total here, once, and its gauges dropped
            self.metrics.retire(self.metrics_path)
        with contextlib.suppress(OSError):
            self.conn.close()
        with contextlib.suppress(ValueError):
            self.process.close()


def log_address(config: Config, listeners: list[socket.socket]) -> None:
    """The "running on ..." line, once for all workers (workers given sockets do not log it)."""
    Server(config)._log_started_message(listeners)


class Multiprocess:
    """The supervisor.  ``run()`` returns the exit status (0, or 3 after a start-up failure)."""

    def __init__(self, config: Config, sockets: list[socket.socket] | None = None) -> None:
        self.config = config
        self.read_rss = rss_reader() if config.limit_max_rss is not None else None
        if config.limit_max_rss is not None and self.read_rss is None:
            raise ConfigError(
                "--limit-max-rss needs /proc (Linux) or psutil to read a worker's memory: pip install psutil"
            )
        self.target = config.workers
        self.reuse_port = bool(getattr(config, "reuse_port", False))
        self.port = config.port
        self.shared_sockets: list[socket.socket] = []
        self.slot_sockets: dict[int, socket.socket] = {}
        if sockets is not None:
            self.shared_sockets = list(sockets)
            self.reuse_port = False
        elif self.reuse_port:
            if config.uds or config.fd is not None:
                raise ConfigError("--reuse-port works with --host/--port only, not with --uds or --fd")
            if listener_plan(config) is not None:
                raise ConfigError("--reuse-port works with --host/--port only, not with sockets passed by systemd")
            if not hasattr(socket, "SO_REUSEPORT"):
                raise ConfigError("--reuse-port needs SO_REUSEPORT, which this platform does not have")
            first = bind_reuseport_socket(config, config.port)
            self.port = first.getsockname()[1]
            self.slot_sockets[0] = first
        else:
            self.shared_sockets = bind_sockets(config)
        self.next_recycle_check = 0.0
        self.recycle_paused_until = 0.0
        self.workers: list[WorkerProcess] = []
        self.restart_queue: list[WorkerProcess] = []
        self.replacing: WorkerProcess | None = None
        self.signals: list[int] = []
        self.should_exit = False
        self.exit_code = 0
        self.exit_signal: int | None = None
        self.force = False
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        self.metrics = Aggregate(workers=True) if config.metrics_port is not None else None
        self.metrics_listener: Listener | None = None
        self.notifier = Notifier.from_environ()
        self.announced_ready = False  # READY=1 sent (after the initial workers, or a rolling restart)
        self.reloading = False  # a SIGHUP rolling restart is under way (RELOADING=1 sent)

    # -- sockets and spawning -------------------------------------------------------

    def sockets_for(self, slot: int) -> list[socket.socket]:
        if not self.reuse_port:
            return self.shared_sockets
        sock = self.slot_sockets.get(slot)
        if sock is None:
            sock = self.slot_sockets[slot] = bind_reuseport_socket(self.config, self.port)
        return [sock]

    def spawn(self, slot: int, reason: str) -> WorkerProcess:
        worker = WorkerProcess(self.config, self.sockets_for(slot), slot, reason, metrics=self.metrics)
        self.workers.append(worker)
        logger.info("Started worker process [%d]", worker.pid)
        return worker

    def free_slot(self) -> int:
        used = {w.slot for w in self.workers if w.state != STOPPING}
        slot = 0
        while slot in used:
            slot += 1
        return slot

    def serving(self) -> list[WorkerProcess]:
        """Workers counted in the worker count (not stopping, not a pending replacement)."""
        return [w for w in self.workers if w.state != STOPPING and w.replaces is None]

    def stop_deadline(self) -> float | None:
        graceful = self.config.timeout_graceful_shutdown
        if graceful is None:
            return None
        # drain (<= keep-alive) + in-flight tasks (<= graceful) + lifespan shutdown slack
        return time.monotonic() + min(float(self.config.timeout_keep_alive), graceful) + graceful + 5.0

    # -- main loop ------------------------------------------------------------------

    def _on_signal(self, sig: int, frame: Any) -> None:
        self.signals.append(sig)

    def run(self) -> int:
        logger.info("Started parent process [%d]", os.getpid())
        self._log_address()
        original = {sig: signal.signal(sig, self._on_signal) for sig in SUPERVISOR_SIGNALS}
        old_wakeup = signal.set_wakeup_fd(self._wakeup_w.fileno(), warn_on_full_buffer=False)
        try:
            if not self.start_metrics():
                return self.exit_code
            for slot in range(self.target):
                self.spawn(slot, "initial")
            while not self.should_exit:
                self._wait(0.5 if self.notifier is None else min(0.5, self.notifier.watchdog()))
                self.handle_signals()
                if self.should_exit:
                    break
                self.read_messages()
                self.reap()
                if self.should_exit:
                    break
                self.check_health()
                self.check_recycling()
                self.advance_restart()
                if self.notifier is not None:
                    self.notify_state(self.notifier)
            self.shutdown_all()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in original.items():
                signal.signal(sig, handler)
            for sock in self.shared_sockets + list(self.slot_sockets.values()):
                sock.close()
            remove_unix_binds(self.config)
            self._wakeup_r.close()
            self._wakeup_w.close()
            if self.metrics_listener is not None:
                self.metrics_listener.close()
            if self.metrics is not None:
                self.metrics.close()
            if self.notifier is not None:
                self.notifier.close()
        logger.info("Stopping parent process [%d]", os.getpid())
        return self.exit_code

    def start_metrics(self) -> bool:
        """--metrics-port: serve the sum over the workers; False (exit status 3) when it cannot bind."""
        if self.metrics is None:
            return True
        config = self.config
        try:
            self.metrics_listener = serve(config.metrics_host, int(config.metrics_port or 0), self.metrics.totals)
        except OSError as exc:
            logger.error(
                "Could not bind the metrics listener to %s:%s: %s", config.metrics_host, config.metrics_port, exc
            )
            self.exit_code = STARTUP_FAILURE
            return False
        return True

    def _log_address(self) -> None:
        log_address(self.config, self.shared_sockets or [self.slot_sockets[0]])
        if self.reuse_port:
            logger.info("Each worker listens on its own SO_REUSEPORT socket (--reuse-port)")

    def _wait(self, timeout: float) -> None:
        objects: list[Any] = [self._wakeup_r]
        for worker in self.workers:
            objects.append(worker.process.sentinel)
            if not worker.conn.closed:
                objects.append(worker.conn)
        # wake up in time for the next health-check deadline
        now = time.monotonic()
        for worker in self.workers:
            if worker.ping_sent_at is not None:
                timeout = min(timeout, max(0.0, worker.ping_sent_at + self.config.timeout_worker_healthcheck - now))
        with contextlib.suppress(InterruptedError):
            ready = multiprocessing.connection.wait(objects, timeout)
            if self._wakeup_r in ready:
                with contextlib.suppress(BlockingIOError, OSError):
                    while self._wakeup_r.recv(512):
                        pass

    # -- signals --------------------------------------------------------------------

    def handle_signals(self) -> None:
        while self.signals:
            sig = self.signals.pop(0)
            name = signal.Signals(sig).name
            if sig in (signal.SIGINT, signal.SIGTERM):
                logger.info("Received %s, stopping the workers.", name)
                self.should_exit = True
                self.exit_signal = sig
            elif sig == getattr(signal, "SIGHUP", None):
                self.handle_hup()
            elif sig == getattr(signal, "SIGTTIN", None):
                self.handle_ttin()
            elif sig == getattr(signal, "SIGTTOU", None):
                self.handle_ttou()

    def handle_hup(self) -> None:
        logger.info("Received SIGHUP, restarting the workers one at a time.")
        for worker in self.serving():
            if worker not in self.restart_queue:
                self.restart_queue.append(worker)
        if self.notifier is not None and self.announced_ready and not self.reloading:
            self.reloading = True
            self.notifier.reloading(f"Rolling restart of {self.target} workers")

    # -- systemd ----------------------------------------------------------------------

    def notify_state(self, notifier: Notifier) -> None:
        """READY=1 when the initial workers (or a rolling restart) are done; STATUS= on changes."""
        ready = sum(1 for w in self.serving() if w.state == READY)
        status = f"{ready} of {self.target} workers ready"
        if not self.announced_ready:
            if ready >= self.target:
                self.announced_ready = True
                notifier.ready(status)
            else:
                notifier.status(f"Starting: {status}")
        elif self.reloading and not self.restart_queue and self.replacing is None:
            self.reloading = False
            notifier.ready(status)
        elif not self.reloading:
            notifier.status(status)

    def handle_ttin(self) -> None:
        self.target += 1
        logger.info("Received SIGTTIN, increasing the number of workers to %d.", self.target)
        self.spawn(self.free_slot(), "scale")

    def handle_ttou(self) -> None:
        serving = self.serving()
        if self.target <= 1 or len(serving) <= 1:
            logger.info("Received SIGTTOU, but there is only one worker left; keeping it.")
            return
        self.target -= 1
        logger.info("Received SIGTTOU, decreasing the number of workers to %d.", self.target)
        # the youngest worker that is not being replaced
        candidates = [w for w in serving if not any(r.replaces is w for r in self.workers)] or serving
        worker = candidates[-1]
        if worker in self.restart_queue:
            self.restart_queue.remove(worker)
        self.stop_worker(worker)

    # -- workers --------------------------------------------------------------------

    def stop_worker(self, worker: WorkerProcess) -> None:
        logger.info("Stopping worker process [%d]", worker.pid)
        worker.stop(self.stop_deadline())

    def read_messages(self) -> None:
        for worker in list(self.workers):
            conn = worker.conn
            while not conn.closed:
                try:
                    if not conn.poll():
                        break
                    message = conn.recv()
                except (EOFError, OSError):
                    conn.close()  # the worker exited; its sentinel tells the rest
                    break
                self.on_message(worker, message)

    def on_message(self, worker: WorkerProcess, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "hello":
            worker.hello = True
        elif kind == "pong":
            if message[1] == worker.ping_seq:
                worker.ping_sent_at = None
                worker.last_pong = time.monotonic()
        elif kind == "ready":
            if worker.state != STARTING:
                return
            worker.state = READY
            worker.last_pong = worker.ready_at = time.monotonic()
            logger.info("Worker process [%d] is ready", worker.pid)
            self.check_rss_at_start(worker)
            old = worker.replaces
            if old is not None:
                worker.replaces = None
                if worker is self.replacing:
                    self.replacing = None
                if old.alive and old.state != STOPPING:
                    self.stop_worker(old)
                self.close_unused_slots()
        elif kind == "retire" and self.may_recycle(worker):
            logger.info("Worker process [%d] reached its request limit; replacing it.", worker.pid)
            self.restart_queue.append(worker)

    def may_recycle(self, worker: WorkerProcess) -> bool:
        """A ready worker that is not queued for replacement, nor being replaced already."""
        return (
            worker.state == READY
            and worker not in self.restart_queue
            and not any(w.replaces is worker for w in self.workers)
        )

    # -- recycling by memory and age ----------------------------------------------------

    def check_rss_at_start(self, worker: WorkerProcess) -> None:
        """A worker over --limit-max-rss as soon as it is ready is reported, not recycled.

        Its replacement would start just as big, and be replaced in turn, in a loop: the
        limit is too low for this app.  Its memory limit is dropped (the other limits stay).
        """
        if worker.max_rss is None or self.read_rss is None:
            return
        rss = self.read_rss(worker.pid)
        if rss is not None and rss > worker.max_rss:
            logger.warning(
                "Worker process [%d] uses %d MiB right after start, more than --limit-max-rss (%d MiB): "
                "it will not be replaced for its memory; raise the limit.",
                worker.pid,
                rss // MIB,
                worker.max_rss // MIB,
            )
            worker.max_rss = None

    def check_recycling(self) -> None:
        """Queue for a rolling replacement each worker over its RSS limit or past its lifetime.

        The supervisor measures (one read of /proc/<pid>/statm per worker and second), so
        a worker spends nothing on it; the replacement goes through the restart queue
        like SIGHUP's, so it is ready before the old worker stops accepting, and only one
        replacement starts at a time.
        """
        now = time.monotonic()
        if now < self.next_recycle_check or now < self.recycle_paused_until:
            return
        self.next_recycle_check = now + RECYCLE_INTERVAL
        for worker in self.workers:
            if worker.ready_at is None or not self.may_recycle(worker):
                continue
            if worker.max_lifetime is not None and now - worker.ready_at >= worker.max_lifetime:
                logger.info(
                    "Worker process [%d] reached its maximum lifetime (%.1f s); replacing it.",
                    worker.pid,
                    worker.max_lifetime,
                )
                self.restart_queue.append(worker)
            elif worker.max_rss is not None and self.read_rss is not None:
                rss = self.read_rss(worker.pid)
                if rss is not None and rss > worker.max_rss:
                    logger.info(
                        "Worker process [%d] uses %d MiB, more than its memory limit (%d MiB); replacing it.",
                        worker.pid,
                        rss // MIB,
                        worker.max_rss // MIB,
                    )
                    self.restart_queue.append(worker)

    def reap(self) -> None:
        for worker in list(self.workers):
            if worker.alive:
                continue
            self.workers.remove(worker)
            code = worker.exitcode
            worker.close()
            if worker in self.restart_queue:
                self.restart_queue.remove(worker)
            if worker.state == STOPPING:
                logger.info("Worker process [%d] stopped (%s)", worker.pid, exit_description(code))
                self.close_unused_slots()
                continue
            if worker.state == STARTING:
                self.on_startup_failure(worker, code)
                if self.should_exit:
                    return
                continue
            # a ready worker died: replace it, unless a replacement for it is on its way
            why = "did not answer the health check" if worker.health_killed else exit_description(code)
            logger.warning("Worker process [%d] died (%s); starting a new one.", worker.pid, why)
            successor = next((w for w in self.workers if w.replaces is worker), None)
            if successor is not None:
                successor.replaces = None
                successor.reason = "respawn"
                if successor is self.replacing:
                    self.replacing = None
            else:
                self.spawn(worker.slot, "respawn")

    def on_startup_failure(self, worker: WorkerProcess, code: int | None) -> None:
        why = "did not answer the health check" if worker.health_killed else exit_description(code)
        if worker.reason in ("restart", "scale"):
            # the running workers are healthy: keep them rather than stop the service
            logger.error("New worker process [%d] failed to start (%s); keeping the running workers.", worker.pid, why)
            if worker.reason == "scale":
                self.target = max(1, self.target - 1)
            if worker is self.replacing or worker.replaces is not None:
                self.replacing = None
                if self.restart_queue:
                    logger.error("Rolling restart aborted; %d worker(s) keep the old code.", len(self.restart_queue))
                self.restart_queue.clear()
                if self.config.recycles_workers:
                    # the next recycling would most likely fail the same way: not in a loop
                    self.recycle_paused_until = time.monotonic() + RECYCLE_RETRY
                    logger.error("Recycling by memory and age paused for %d s.", RECYCLE_RETRY)
            self.close_unused_slots()
            return
        logger.error(
            "Worker process [%d] failed to start (%s); stopping the server. "
            "The error is logged above; fix it and start the server again.",
            worker.pid,
            why,
        )
        self.exit_code = STARTUP_FAILURE
        self.should_exit = True

    def check_health(self) -> None:
        timeout = float(self.config.timeout_worker_healthcheck)
        interval = min(HEALTHCHECK_INTERVAL, timeout / 2) if timeout > 0 else HEALTHCHECK_INTERVAL
        now = time.monotonic()
        for worker in self.workers:
            if worker.state == STOPPING:
                if worker.stop_deadline is not None and now >= worker.stop_deadline:
                    logger.warning("Worker process [%d] did not stop in time; killing it.", worker.pid)
                    worker.stop_deadline = None
                    worker.kill()
                continue
            if not worker.hello or worker.health_killed:
                continue
            if worker.ping_sent_at is not None:
                if now - worker.ping_sent_at >= timeout:
                    logger.error(
                        "Worker process [%d] did not answer the health check within %ss; killing it.",
                        worker.pid,
                        self.config.timeout_worker_healthcheck,
                    )
                    worker.health_killed = True
                    worker.kill()
            elif now - worker.last_pong >= interval:
                worker.ping_seq += 1
                worker.ping_sent_at = now
                worker.send(("ping", worker.ping_seq))

    def advance_restart(self) -> None:
        """Start the replacement of the next queued worker once the previous one is ready."""
        if self.replacing is not None:
            return
        while self.restart_queue:
            old = self.restart_queue.pop(0)
            if old not in self.workers or old.state != READY:
                continue
            new = WorkerProcess(self.config, self.sockets_for(old.slot), old.slot, "restart", metrics=self.metrics)
            new.replaces = old
            self.workers.append(new)
            self.replacing = new
            logger.info("Started worker process [%d] to replace [%d]", new.pid, old.pid)
            return

    def close_unused_slots(self) -> None:
        """--reuse-port: close the socket of a slot no worker uses any more (after SIGTTOU)."""
        if not self.reuse_port:
            return
        used = {w.slot for w in self.workers}
        for slot in list(self.slot_sockets):
            if slot not in used:
                self.slot_sockets.pop(slot).close()

    # -- shutdown -------------------------------------------------------------------

    def shutdown_all(self) -> None:
        if self.notifier is not None:
            self.notifier.stopping(f"Stopping {len(self.workers)} workers")
        deadline = self.stop_deadline()
        for worker in self.workers:
            if worker.state != STOPPING:
                worker.stop(deadline)
        self.restart_queue.clear()
        while self.workers:
            self._wait(0.5)
            for sig in self.signals:
                if sig == signal.SIGINT and not self.force:
                    # a second Ctrl+C: forward it, each worker then force-quits
                    self.force = True
                    logger.info("Received SIGINT again, forcing the workers to quit.")
                    for worker in self.workers:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(worker.pid, signal.SIGINT)
            self.signals.clear()
            self.read_messages()
            now = time.monotonic()
            for worker in list(self.workers):
                if not worker.alive:
                    logger.info("Waiting for child process [%d]", worker.pid)
                    self.workers.remove(worker)
                    worker.close()
                elif worker.stop_deadline is not None and now >= worker.stop_deadline:
                    logger.warning("Worker process [%d] did not stop in time; killing it.", worker.pid)
                    worker.stop_deadline = None
                    worker.kill()


def run_multiprocess(config: Config, sockets: list[socket.socket] | None = None) -> None:
    """``fastasgi app:app --workers N``: supervise workers until SIGINT / SIGTERM."""
    try:
        supervisor = Multiprocess(config, sockets)
    except ConfigError as exc:
        logger.error("%s", exc)
        sys.exit(STARTUP_FAILURE)
    code = supervisor.run()
    if code:
        sys.exit(code)
    if supervisor.exit_signal is not None:
        # exit as a single server does: re-raise the signal with its original handler
        signal.raise_signal(supervisor.exit_signal)
