"""The text of uploaded PDFs, read for search after the upload has been answered.

An upload only checks that a PDF is safe to keep and to render; it is stored with
``text_pending`` set and its id is queued. The files feature's background task takes the
queue in turn, each file after the first pages of the documents uploaded so far have been
rendered ahead (readers wait for those, not for search): a text worker reads the text
with pdfium (``pdf_check.extract_text``), and one transaction stores it, clears the flag
and tells the features (``file_text_handlers``: messaging makes the file searchable where
it is already attached). Until then the file is simply not found by its text. At start-up
the files a previous run left pending are queued again, so a restart during the reading
loses nothing.

A PDF whose text cannot be read (pdfium refuses it, the time or memory limit) is kept
without searchable text. A file whose content is not on this node is left pending for a
node that has it.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select

from server.context import Context
from server.files.models import StoredFile
from server.files.runtime import FilesRuntime, runtime
from server.files.worker import JobRejected, WorkerCrashed, WorkerTimeout

log = logging.getLogger("dienhong.files.text")


async def pending_files(ctx: Context) -> list[int]:
    """The ids of the files whose text has not been read yet, oldest first."""
    async with ctx.read() as session:
        rows = await session.execute(
            select(StoredFile.id).where(StoredFile.text_pending).order_by(StoredFile.id)
        )
        return [int(file_id) for file_id in rows.scalars()]


async def store_text(ctx: Context, file_id: int, text: str) -> bool:
    """Store the text of file ``file_id`` and clear its flag; False when it was not pending
    (another node read it first)."""
    async with ctx.write() as w:
        row = await w.session.get(StoredFile, file_id)
        if row is None or not row.text_pending:
            return False
        row.text = text
        row.text_pending = False
        # The row is updated (and, on PostgreSQL, locked) before the handlers look at
        # where the file is attached: an attachment made meanwhile reads the text after
        # this transaction, or this transaction's handlers see the attachment.
        await w.session.flush()
        for handler in ctx.file_text_handlers:
            await handler(w, row.id, row.name, text)
    return True


async def read_text(ctx: Context, rt: FilesRuntime, file_id: int) -> None:
    """Read and store the text of one pending file."""
    async with ctx.read() as session:
        row = await session.get(StoredFile, file_id)
    if row is None or not row.text_pending:
        return
    if not rt.store.blob_path(row.sha256).is_file():
        log.warning("the content of file %d is not on this node; its text stays unread", file_id)
        return
    # The first pages of a new document go first: readers wait for them, not for search.
    await rt.renders_ahead_done()
    try:
        text = await rt.extract_text(row.sha256)
    except (JobRejected, WorkerTimeout, WorkerCrashed) as exc:
        log.warning(
            "the text of file %d could not be read (%s); it is not searchable", file_id, exc
        )
        text = ""
    await store_text(ctx, file_id, text)


async def read_texts_forever(ctx: Context) -> None:
    """Read the text of every file queued by an upload, after those left pending before."""
    rt = runtime(ctx)
    for file_id in await pending_files(ctx):
        rt.read_text_later(file_id)

    async def reader() -> None:
        while True:
            file_id = await rt.next_text()
            try:
                await read_text(ctx, rt, file_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Left pending: the next start reads it again.
                log.exception("reading the text of file %d failed", file_id)

    await asyncio.gather(*(reader() for _ in range(max(1, ctx.settings.pdf_text_workers))))
