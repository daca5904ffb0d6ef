"""Several worker processes of one node: ``dienhong serve --workers N``.

The parent migrates the database, checks the port and binds the listening socket once,
then forks N worker processes that all accept on that socket. Each worker builds its own
application after the fork, so each is a node of its own to the rest of the system: its own
node id, hub, sockets, database pool and Redis subscription. Events cross between workers
through Redis exactly as they cross between machines, which is why more than one worker
needs ``DIENHONG_REDIS_URL``.

The parent only supervises: a worker that dies is started again (after a pause when it
died young, so a worker that cannot start does not spin); SIGTERM or SIGINT to the parent
stops every worker the way a single node stops (sockets closed with 1012, requests
finished, the broker's queue handed over) and the parent exits 0.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import select
import signal
import socket
import sys
import time
from types import FrameType
from typing import NoReturn

from server.settings import Settings, SettingsError

log = logging.getLogger("dienhong.workers")

# More workers than this per core only add memory and contention.
MAX_WORKERS_PER_CPU = 8
# How long the parent waits for its workers to stop before it kills them: uvicorn's graceful
# shutdown (10 s) plus the application's own (hand-over, checkpoint), within systemd's 30 s.
STOP_TIMEOUT_SECS = 25.0
# A worker that dies sooner than this after its start is started again after a pause that
# doubles (up to RESTART_MAX_PAUSE_SECS); one that lived longer is started again at once.
RESTART_MIN_UPTIME_SECS = 10.0
RESTART_MAX_PAUSE_SECS = 30.0
# Pending connections of the shared listening socket (uvicorn's default).
BACKLOG = 2048


def check_workers(settings: Settings, workers: int) -> str | None:
    """Raise ``SettingsError`` for a count that makes no sense; the one sentence that
    refuses to start when workers would have nothing to share events through; else None."""
    cpus = os.cpu_count() or 1
    if workers < 1:
        raise SettingsError(f"--workers (DIENHONG_WORKERS) must be at least 1, not {workers}")
    if workers > MAX_WORKERS_PER_CPU * cpus:
        raise SettingsError(
            f"--workers {workers} is more than {MAX_WORKERS_PER_CPU} per core of this "
            f"machine ({cpus} cores); one per core is the usual choice"
        )
    if workers > 1 and not settings.redis_url:
        return (
            f"{workers} workers need Redis to carry events between them: set "
            "DIENHONG_REDIS_URL (redis://...), or serve with one worker."
        )
    return None


def listening_socket(host: str, port: int) -> socket.socket:
    """The one socket every worker accepts on (bound and listening before any fork)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def preload() -> None:
    """Import every module a worker needs before forking, so the workers share those
    pages with the parent instead of each importing (and holding) its own copy."""
    import uvicorn  # noqa: F401

    from server.app import create_app, default_features  # noqa: F401
    from server.compat.uvicorn_ws import websocket_protocol  # noqa: F401

    default_features()


def serve_worker(
    settings: Settings, sock: socket.socket, number: int, thresholds: tuple[int, int, int]
) -> int:
    """One worker: its own application (a node), served on the shared socket."""
    import uvicorn

    from server.app import create_app
    from server.cli import uvicorn_options

    app = create_app(settings)
    print(
        f"worker {number}: pid {os.getpid()}, node {app.state.node_id}",
        file=sys.stderr,
        flush=True,
    )
    # As a single node does: what lives as long as the process stays out of the collector.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings)))  # type: ignore[arg-type]
    server.run(sockets=[sock])
    return 0 if server.started else 3


class _Stop(Exception):
    """SIGTERM in a worker: stop (uvicorn takes the signal over while it serves)."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


class Supervisor:
    """Forks the workers, starts again those that die, stops them all on SIGTERM/SIGINT."""

    def __init__(
        self,
        settings: Settings,
        sock: socket.socket,
        workers: int,
        thresholds: tuple[int, int, int],
    ) -> None:
        self.settings = settings
        self.sock = sock
        self.workers = workers
        self.thresholds = thresholds
        self.running: dict[int, int] = {}  # pid -> worker number
        self.started_at: dict[int, float] = {}  # worker number -> time of its start
        self.pauses: dict[int, float] = {}  # worker number -> pause before its next start
        self.due: dict[int, float] = {}  # worker number -> when to start it again
        self.stopping = False
        self._wake_r = self._wake_w = -1

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True

    def run(self) -> int:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, self._on_signal)
        print(f"{self.workers} workers", file=sys.stderr, flush=True)
        for number in range(1, self.workers + 1):
            self._start(number)
        deadline: float | None = None
        while self.running or (self.due and not self.stopping):
            select.select([self._wake_r], [], [], self._timeout(deadline))
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake_r, 512):
                    pass
            self._reap()
            now = time.monotonic()
            if self.stopping and deadline is None:
                deadline = now + STOP_TIMEOUT_SECS
                self.due.clear()
                self._signal_all(signal.SIGTERM)
            elif deadline is not None and now >= deadline:
                log.error(
                    "%d worker(s) still running %.0f s after SIGTERM: killing them",
                    len(self.running),
                    STOP_TIMEOUT_SECS,
                )
                self._signal_all(signal.SIGKILL)
                deadline = now + STOP_TIMEOUT_SECS
            if not self.stopping:
                for number, when in list(self.due.items()):
                    if when <= now:
                        del self.due[number]
                        self._start(number)
        self.sock.close()
        print(f"all {self.workers} workers stopped", file=sys.stderr, flush=True)
        return 0

    def _timeout(self, deadline: float | None) -> float:
        now = time.monotonic()
        wake = [*self.due.values()] if not self.stopping else []
        if deadline is not None:
            wake.append(deadline)
        return max(0.0, min(wake, default=now + 1.0) - now)

    def _signal_all(self, signum: int) -> None:
        for pid in self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _start(self, number: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            _stop_with_parent(parent)
            self._child(number)
        self.running[pid] = number
        self.started_at[number] = time.monotonic()

    def _child(self, number: int) -> NoReturn:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            os.close(self._wake_r)
            os.close(self._wake_w)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, _raise_stop)
            signal.signal(signal.SIGTERM, _raise_stop)
            code = serve_worker(self.settings, self.sock, number, self.thresholds)
        except _Stop:
            # Stopped before serving, or uvicorn handing the signal back after a graceful
            # shutdown: a clean stop either way.
            code = 0
        except BaseException:
            log.exception("worker %d failed", number)
        finally:
            with contextlib.suppress(Exception):
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            number = self.running.pop(pid, None)
            if number is None:
                continue
            if self.stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            lived = time.monotonic() - self.started_at.get(number, 0.0)
            if lived >= RESTART_MIN_UPTIME_SECS:
                pause = 0.0
                self.pauses.pop(number, None)
            else:
                pause = min(RESTART_MAX_PAUSE_SECS, max(1.0, 2 * self.pauses.get(number, 0.5)))
                self.pauses[number] = pause
            log.warning(
                "worker %d (pid %d) died (%s) after %.0f s; starting it again%s",
                number,
                pid,
                how,
                lived,
                f" in {pause:.0f} s" if pause else "",
            )
            self.due[number] = time.monotonic() + pause


# prctl(2) option: the signal the kernel sends this process when its parent dies.
_PR_SET_PDEATHSIG = 1


def _stop_with_parent(parent: int) -> None:
    """A worker whose supervisor dies (even by SIGKILL) is sent SIGTERM and stops as a node
    stops: no orphan keeps serving the port unsupervised after a restart of the service."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        # The parent died between the fork and the request above.
        os.kill(os.getpid(), signal.SIGTERM)
