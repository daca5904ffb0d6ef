"""The files feature's runtime state on one node: storage, worker pools, render cache.

Held in ``ctx.runtimes``, created on first use and closed when the app stops
(the feature's background task). Renders are shared: when 95 tablets ask for the same
page at once, one worker renders it and all 95 get the cached PNG. The text of uploaded
PDFs is read by workers of its own, from a queue, after the upload was answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.clock import Clock
from server.context import Context
from server.files.models import StoredFile
from server.files.storage import ContentStore
from server.files.worker import (
    JobRejected,
    WorkerCrashed,
    WorkerPool,
    WorkerTimeout,
    start_fork_server,
)

if TYPE_CHECKING:
    from sqlalchemy import Select

    from server.org.models import Confidentiality

log = logging.getLogger("dienhong.files")

# Render-ahead batches running at once per node; further ones are skipped (the pages
# are still rendered when first asked for).
MAX_RENDER_AHEAD_BATCHES = 16


class RenderFailed(Exception):
    """A page could not be rendered (bad page, time or memory limit)."""


class PageGrants:
    """Files a user was found allowed to read, each kept for at most ``ttl_secs``: the
    check of a page image in a burst. Bounded: when full, the grant kept longest goes
    first. Only grants are kept; a refusal is checked again every time."""

    def __init__(self, clock: Clock, ttl_secs: float, max_entries: int) -> None:
        self.clock = clock
        self.ttl = timedelta(seconds=ttl_secs)
        self.max_entries = max_entries
        self.enabled = ttl_secs > 0 and max_entries > 0
        self._entries: dict[tuple[int, int], tuple[StoredFile, datetime]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, user_id: int, file_id: int) -> StoredFile | None:
        """The file ``user_id`` was allowed to read less than the TTL ago, or None."""
        entry = self._entries.get((user_id, file_id))
        if entry is None:
            return None
        if self.clock.now() >= entry[1]:
            del self._entries[(user_id, file_id)]
            return None
        return entry[0]

    def put(self, user_id: int, f: StoredFile) -> None:
        if not self.enabled:
            return
        key = (user_id, f.id)
        self._entries.pop(key, None)
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (f, self.clock.now() + self.ttl)


class FilesRuntime:
    def __init__(self, ctx: Context) -> None:
        settings = ctx.settings
        self.settings = settings
        self.store = ContentStore(settings.data_dir)
        self.parse_pool = WorkerPool(
            "parse",
            settings.pdf_parse_workers,
            memory_mb=settings.pdf_worker_memory_mb,
            max_jobs=settings.pdf_worker_max_jobs,
            queue_limit=settings.pdf_queue_limit,
        )
        self.render_pool = WorkerPool(
            "render",
            settings.pdf_render_workers,
            memory_mb=settings.pdf_worker_memory_mb,
            max_jobs=settings.pdf_worker_max_jobs,
            queue_limit=settings.pdf_queue_limit,
        )
        # Reading a PDF's text for search happens after the upload is answered, in workers
        # of its own: it never holds up an upload's checks nor a page image.
        self.text_pool = WorkerPool(
            "text",
            settings.pdf_text_workers,
            memory_mb=settings.pdf_worker_memory_mb,
            max_jobs=settings.pdf_worker_max_jobs,
            queue_limit=settings.pdf_queue_limit,
        )
        # Files whose text is to be read, by id (the background task takes them in turn).
        self.texts: asyncio.Queue[int] = asyncio.Queue()
        self._texts_queued: set[int] = set()
        # Stamping has its own workers: a room of delegates downloading the session's
        # papers at once must not hold up uploads or page images.
        self.stamp_pool = WorkerPool(
            "stamp",
            settings.pdf_stamp_workers,
            memory_mb=settings.pdf_worker_memory_mb,
            max_jobs=settings.pdf_worker_max_jobs,
            queue_limit=settings.pdf_queue_limit,
        )
        self._inflight: dict[tuple[str, int, int, str], asyncio.Task[Path]] = {}
        self._ahead: set[asyncio.Task[None]] = set()
        self.renders_done = 0
        # Warm pages in memory, least recently used first: a burst of tablets asking for
        # the presented page is answered without a file read (a thread hop) per request.
        self._memory: OrderedDict[tuple[str, int, int, str], bytes] = OrderedDict()
        self._memory_bytes = 0
        # ``service.readable_file``'s statement for each kind of reader (roles, clearance):
        # as many as there are such kinds, a few dozen at most.
        self.readable_statements: dict[tuple[frozenset[str], Confidentiality], Select[Any]] = {}
        # Who may read which file's pages, for a few seconds (``page_grant_cache_secs``).
        self.page_grants = PageGrants(
            ctx.clock, settings.page_grant_cache_secs, settings.page_grant_cache_size
        )

    def remembered_page(self, sha256: str, page: int, width: int, fmt: str) -> bytes | None:
        """The image of a page kept in memory, or None."""
        key = (sha256, page, width, fmt)
        data = self._memory.get(key)
        if data is not None:
            self._memory.move_to_end(key)
        return data

    def remember_page(self, sha256: str, page: int, width: int, fmt: str, data: bytes) -> None:
        """Keep a page image in memory, within ``render_memory_cache_bytes``."""
        limit = self.settings.render_memory_cache_bytes
        key = (sha256, page, width, fmt)
        if len(data) > limit // 8 or key in self._memory:
            return
        self._memory[key] = data
        self._memory_bytes += len(data)
        while self._memory_bytes > limit:
            _old, dropped = self._memory.popitem(last=False)
            self._memory_bytes -= len(dropped)

    async def inspect_pdf(self, path: Path) -> dict[str, Any]:
        """Pages and title of an uploaded PDF (JobRejected, WorkerTimeout...)."""
        s = self.settings
        result: dict[str, Any] = await self.parse_pool.run(
            "inspect",
            {
                "path": str(path),
                "max_pages": s.pdf_max_pages,
                "max_image_pixels": s.pdf_max_image_pixels,
            },
            s.pdf_worker_timeout_secs,
        )
        return result

    def read_text_later(self, file_id: int) -> None:
        """Queue the reading of file ``file_id``'s text (once, however often asked)."""
        if file_id not in self._texts_queued:
            self._texts_queued.add(file_id)
            self.texts.put_nowait(file_id)

    async def next_text(self) -> int:
        """The next file whose text is to be read."""
        file_id = await self.texts.get()
        self._texts_queued.discard(file_id)
        return file_id

    async def extract_text(self, sha256: str) -> str:
        """The text of a stored PDF, read by a text worker (JobRejected, WorkerTimeout...)."""
        s = self.settings
        text: str = await self.text_pool.run(
            "extract_text",
            {
                "path": str(self.store.blob_path(sha256)),
                "max_text_chars": s.max_extracted_text_chars,
            },
            s.pdf_text_timeout_secs,
        )
        return text

    async def stamp_pdf(
        self, sha256: str, footer: str, mark: str, metadata: dict[str, str]
    ) -> Path:
        """A stamped copy in the temporary directory; the caller removes it."""
        out = self.store.temp_path(".pdf")
        try:
            await self.stamp_pool.run(
                "stamp",
                {
                    "path": str(self.store.blob_path(sha256)),
                    "out": str(out),
                    "footer": footer,
                    "mark": mark,
                    "metadata": metadata,
                },
                self.settings.pdf_stamp_timeout_secs,
            )
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                out.unlink()
            raise
        return out

    async def derived_pdf(self, job: str, kwargs: dict[str, Any]) -> Path:
        """Run a feature's ``module:function`` job that writes a PDF to ``out``, in the
        stamping workers (with their memory and time limits); the caller removes the file."""
        out = self.store.temp_path(".pdf")
        try:
            await self.stamp_pool.run(
                job, {**kwargs, "out": str(out)}, self.settings.pdf_stamp_timeout_secs
            )
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                out.unlink()
            raise
        return out

    async def page_png(self, sha256: str, page: int, width: int) -> Path:
        """The cached PNG of ``page`` (1-based) at ``width``, rendering it if needed."""
        return await self.page_image(sha256, page, width, "png")

    async def page_image(self, sha256: str, page: int, width: int, fmt: str) -> Path:
        """The cached image (``png`` or ``webp``) of ``page`` at ``width``, rendering it
        if needed."""
        path = self.store.render_path(sha256, page, width, fmt)
        # File times are the file system's wall clock, not the app's (injected) clock.
        if self.store.touch_render(path, time.time()):
            return path
        key = (sha256, page, width, fmt)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(
                self._render(sha256, page, width, path, fmt),
                name=f"render-{sha256[:8]}-{page}-{width}-{fmt}",
            )
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._render_done(key, done))
        return await asyncio.shield(task)

    def _render_done(self, key: tuple[str, int, int, str], task: asyncio.Task[Path]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled() and task.exception() is not None:
            log.info(
                "rendering %s page %d at %d failed: %s",
                key[0][:12],
                key[1],
                key[2],
                task.exception(),
            )

    async def _render(
        self, sha256: str, page: int, width: int, path: Path, fmt: str = "png"
    ) -> Path:
        try:
            await self.render_pool.run(
                "render",
                {
                    "path": str(self.store.blob_path(sha256)),
                    "page_index": page - 1,
                    "width": width,
                    "out": str(path),
                    "max_pixels": self.settings.render_max_pixels,
                    "fmt": fmt,
                    "quality": self.settings.render_webp_quality,
                },
                self.settings.pdf_render_timeout_secs,
            )
        except (JobRejected, WorkerTimeout, WorkerCrashed) as exc:
            raise RenderFailed(str(exc)) from exc
        self.renders_done += 1
        return path

    def render_ahead(self, sha256: str, pages: int) -> None:
        """Start rendering the first pages at the default width, in the background."""
        count = min(pages, self.settings.render_ahead_pages)
        if count <= 0 or len(self._ahead) >= MAX_RENDER_AHEAD_BATCHES:
            return
        task = asyncio.create_task(
            self._render_first(sha256, count), name=f"render-ahead-{sha256[:8]}"
        )
        self._ahead.add(task)
        task.add_done_callback(self._ahead.discard)

    async def _render_first(self, sha256: str, count: int) -> None:
        width = self.settings.render_default_width
        results = await asyncio.gather(
            *(self.page_png(sha256, page, width) for page in range(1, count + 1)),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            log.info("render-ahead of %s: %d of %d pages failed", sha256[:12], len(failures), count)

    async def renders_ahead_done(self) -> None:
        """Wait until the render-ahead batches started so far have finished."""
        if self._ahead:
            await asyncio.gather(*self._ahead, return_exceptions=True)

    async def settled(self) -> None:
        """Wait until every render started so far (render-ahead included) has finished."""
        while self._ahead or self._inflight:
            await asyncio.gather(*self._ahead, *self._inflight.values(), return_exceptions=True)

    async def close(self) -> None:
        for task in [*self._ahead, *self._inflight.values()]:
            task.cancel()
        for task in [*self._ahead, *self._inflight.values()]:
            with contextlib.suppress(BaseException):
                await task
        # Stopping a worker waits (briefly) for its process: not on the event loop.
        await asyncio.gather(
            *(
                asyncio.to_thread(pool.close)
                for pool in (self.parse_pool, self.text_pool, self.render_pool, self.stamp_pool)
            )
        )


async def trim_renders_forever(ctx: Context, store: ContentStore) -> None:
    """Keep the render cache under ``render_cache_max_bytes``: every interval, the least
    recently used pages go (they are rendered again if asked for)."""
    settings = ctx.settings
    while True:
        if settings.render_cache_max_bytes > 0:
            try:
                removed, left = await asyncio.to_thread(
                    store.trim_renders,
                    settings.render_cache_max_bytes,
                    time.time(),
                    settings.render_cache_keep_secs,
                )
            except OSError as exc:
                log.warning("trimming the render cache failed: %s", exc)
            else:
                if removed:
                    log.info("render cache: removed %d pages, %d bytes left", removed, left)
        await asyncio.sleep(max(1.0, settings.render_cache_trim_interval_secs))


def runtime(ctx: Context) -> FilesRuntime:
    """This node's files runtime, created on first use."""
    return ctx.runtimes.setdefault(FilesRuntime, lambda: FilesRuntime(ctx))


async def run_until_shutdown(ctx: Context) -> None:
    """Background task of the feature: warms the fork server, clears temporary files left
    by a previous run, reads the text of uploaded PDFs (those a previous run left pending
    first), keeps the render cache trimmed, and closes the worker pools when the app stops."""
    try:
        try:
            await asyncio.to_thread(start_fork_server)
        except (OSError, RuntimeError, ValueError) as exc:
            log.warning("could not start the PDF fork server ahead of time: %s", exc)
        # File times are the file system's wall clock, not the app's (injected) clock.
        store = ContentStore(ctx.settings.data_dir)
        removed = await asyncio.to_thread(store.sweep_tmp, time.time())
        if removed:
            log.info("removed %d stale temporary files", removed)
        from server.files.text import read_texts_forever

        await asyncio.gather(trim_renders_forever(ctx, store), read_texts_forever(ctx))
    finally:
        current = ctx.runtimes.pop(FilesRuntime)
        if current is not None:
            await current.close()
