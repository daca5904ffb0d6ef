"""PDF work in separate processes, with a time limit and a memory limit per job.

PDFs come from outside; pypdf and pdfium can be driven into endless loops or huge
allocations by a crafted file. So every PDF job runs in a worker process:

* the child caps its own address space (``RLIMIT_AS``) and, per job, its CPU time
  (``RLIMIT_CPU``, a backstop should the server itself be gone);
* the server waits for the answer at most the job's time limit, then kills the worker and
  starts a fresh one for the next job. A worker that dies (out of memory, killed) fails
  only its own job;
* a pool has a fixed number of workers and a bounded number of jobs waiting for one;
  beyond that new jobs are refused (429) rather than queued without end.

The server thread that waits for a worker's answer is one of the pool's own threads, one
per worker, so the event loop never blocks and never competes for the default executor.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
import multiprocessing
import multiprocessing.context
import os
import resource
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from server.errors import TooManyRequests

log = logging.getLogger("dienhong.files.worker")

# How long a new worker may take to import its libraries and say it is ready.
WORKER_START_TIMEOUT_SECS = 60.0
MIB = 1024 * 1024
# Workers are forked from a small server process that has loaded these once, so starting
# a worker (and replacing a killed one) takes milliseconds, not the seconds an import of
# pypdf, pdfium, fpdf2 and Pillow costs. The fork server itself runs no PDF code.
PRELOAD = [
    "server.files.worker",
    "server.files.pdf_check",
    "server.files.rendering",
    "server.files.stamping",
    "server.signing.verify",
    "pypdf",
    "pypdfium2",
    "fpdf",
    "PIL.Image",
]


class JobRejected(Exception):
    """The job's input is unacceptable (raised inside the worker, carried to the server)."""


class WorkerTimeout(Exception):
    """The job ran past its time limit; its worker was killed."""


class WorkerCrashed(Exception):
    """The worker died during the job (memory limit, signal) or failed unexpectedly."""


# --- inside the worker process ---------------------------------------------------------


def _jobs() -> dict[str, Callable[..., Any]]:
    # Libraries are loaded before the worker says it is ready, so no job's time limit
    # pays for them.
    import fpdf  # noqa: F401
    import PIL.Image  # noqa: F401
    import pypdf  # noqa: F401
    import pypdfium2  # noqa: F401

    from server.files import pdf_check, rendering, stamping
    from server.signing import verify

    return {
        "inspect": pdf_check.inspect_pdf,
        "extract_text": pdf_check.extract_text,
        "render": rendering.render_page,
        "stamp": stamping.stamp_pdf,
        "verify_signatures": verify.verify_file,
    }


def _feature_job(name: str) -> Callable[..., Any]:
    """A feature's job named ``module:function`` (only the server writes to this pipe)."""
    module, _sep, function = name.partition(":")
    found: Callable[..., Any] = getattr(importlib.import_module(module), function)
    return found


def _limit_cpu(seconds: float) -> None:
    """Let this process use at most ``seconds`` more CPU time (SIGXCPU ends it after)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(used + seconds) + 1
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def worker_main(conn: Connection, memory_mb: int) -> None:
    """The worker's loop: receive ``(job, kwargs, timeout)``, answer ``(status, value)``."""
    # Ctrl-C in the server's terminal reaches the whole process group; the server ends
    # its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_mb > 0:
        limit = memory_mb * MIB
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    jobs = _jobs()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        name, kwargs, timeout = message
        _limit_cpu(timeout)
        try:
            job = jobs.get(name) or _feature_job(name)
            conn.send(("ok", job(**kwargs)))
        except JobRejected as exc:
            conn.send(("rejected", str(exc)))
        except MemoryError:
            # The heap may be in no state to go on: answer, then make way for a fresh worker.
            conn.send(("rejected_fatal", "the document needs more memory than allowed"))
            return
        except RecursionError:
            conn.send(("rejected", "the document is nested too deeply"))
        except Exception as exc:  # any library failure is this job's failure only
            conn.send(("error", f"{type(exc).__name__}: {exc}"[:500]))


# --- in the server -----------------------------------------------------------------------


def fork_server_context() -> multiprocessing.context.ForkServerContext:
    """The multiprocessing context workers come from, with the libraries preloaded."""
    context = multiprocessing.get_context("forkserver")
    assert isinstance(context, multiprocessing.context.ForkServerContext)
    context.set_forkserver_preload(PRELOAD)
    return context


def start_fork_server() -> None:
    """Start the fork server now (blocking, some seconds), so the first upload need not."""
    fork_server_context()
    from multiprocessing import forkserver

    forkserver.ensure_running()


class _Worker:
    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.jobs = 0

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()


class WorkerPool:
    """A fixed number of PDF worker processes, started when first needed."""

    def __init__(
        self, name: str, size: int, *, memory_mb: int, max_jobs: int, queue_limit: int
    ) -> None:
        self.name = name
        self.size = max(1, size)
        self.memory_mb = memory_mb
        self.max_jobs = max(1, max_jobs)
        self.queue_limit = queue_limit
        self._mp = fork_server_context()
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._threads = ThreadPoolExecutor(self.size, thread_name_prefix=f"pdf-{name}")
        self._slots = asyncio.Semaphore(self.size)
        self._waiting = 0
        self._closed = False
        self.started = 0
        self.killed = 0
        # Jobs answered by a worker, by job name (whatever the answer).
        self.completed: dict[str, int] = {}

    async def run(self, job: str, kwargs: dict[str, Any], timeout: float) -> Any:
        """Run ``job`` in a worker; raises JobRejected, WorkerTimeout or WorkerCrashed."""
        if self._closed:
            raise WorkerCrashed("the worker pool is shut down")
        if self._waiting >= self.queue_limit:
            raise TooManyRequests(
                "The document workers are busy; try again shortly.",
                code="busy",
                details={"retry_after": 2},
            )
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        loop = asyncio.get_running_loop()

        def release(_done: Future[Any]) -> None:
            # The slot is freed when the worker is, even if the caller stopped waiting.
            try:
                loop.call_soon_threadsafe(self._slots.release)
            except RuntimeError:
                pass  # the loop is closed: the server is gone

        try:
            future = self._threads.submit(self._run_blocking, job, kwargs, timeout)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(release)
        return await asyncio.wrap_future(future)

    def _spawn(self) -> _Worker:
        parent, child = self._mp.Pipe(duplex=True)
        process = self._mp.Process(
            target=worker_main,
            args=(child, self.memory_mb),
            name=f"dienhong-pdf-{self.name}",
            daemon=True,
        )
        process.start()
        child.close()
        worker = _Worker(process, parent)
        try:
            if not parent.poll(WORKER_START_TIMEOUT_SECS):
                raise WorkerCrashed("a PDF worker did not start in time")
            _status, _pid = parent.recv()
        except (EOFError, OSError) as exc:
            worker.kill()
            raise WorkerCrashed(f"a PDF worker failed to start: {exc}") from exc
        except WorkerCrashed:
            worker.kill()
            raise
        self.started += 1
        return worker

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise WorkerCrashed("the worker pool is shut down")
            worker = self._idle.pop() if self._idle else None
        if worker is None or not worker.process.is_alive():
            if worker is not None:
                worker.kill()
            worker = self._spawn()
        with self._lock:
            self._busy.add(worker)
        return worker

    def _give_back(self, worker: _Worker, healthy: bool) -> None:
        with self._lock:
            self._busy.discard(worker)
            keep = healthy and not self._closed and worker.jobs < self.max_jobs
            if keep:
                self._idle.append(worker)
        if not keep:
            if healthy:
                worker.stop()
            else:
                worker.kill()

    def _run_blocking(self, job: str, kwargs: dict[str, Any], timeout: float) -> Any:
        worker = self._take()
        healthy = False
        try:
            worker.conn.send((job, kwargs, timeout))
            if not worker.conn.poll(timeout):
                self.killed += 1
                log.warning("PDF %s job ran over %.1fs; its worker was killed", job, timeout)
                raise WorkerTimeout(f"the {job} job ran over {timeout:g} s")
            status, value = worker.conn.recv()
        except (EOFError, OSError, BrokenPipeError) as exc:
            self.killed += 1
            raise WorkerCrashed(f"the PDF worker died during the {job} job") from exc
        else:
            worker.jobs += 1
            with self._lock:
                self.completed[job] = self.completed.get(job, 0) + 1
            healthy = status != "rejected_fatal"
            if status == "ok":
                return value
            if status in ("rejected", "rejected_fatal"):
                raise JobRejected(str(value))
            raise WorkerCrashed(str(value))
        finally:
            self._give_back(worker, healthy)

    def close(self) -> None:
        """Stop every worker: idle ones politely, busy ones at once."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = list(self._busy)
        for worker in busy:
            worker.kill()
        for worker in idle:
            worker.stop()
        self._threads.shutdown(wait=False, cancel_futures=True)
