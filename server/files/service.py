"""Files service: who may read a file, attaching files to other objects, storing uploads.

A file is readable by its uploader and by anyone one of the features' file access checks
lets through (a directive's recipient, a meeting's delegate...). Everyone else is told the
file does not exist (404), so ids leak nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, cast

from sqlalchemy import ColumnElement, Integer, Select, bindparam, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.principal import Principal
from server.batched_reads import BatchedReads
from server.context import Context
from server.errors import NotFound, Unprocessable
from server.files import content_types
from server.files.models import MAX_TITLE_CHARS, StoredFile
from server.files.runtime import FilesRuntime, RenderFailed, runtime
from server.files.storage import discard
from server.files.upload import ReceivedFile
from server.files.worker import JobRejected, WorkerCrashed, WorkerTimeout
from server.org.models import Confidentiality, Unit, User
from server.signing import uploads as signed_uploads

log = logging.getLogger("dienhong.files")

# Stamps show the time as the council reads it (Vietnam has no daylight saving).
STAMP_TIMEZONE = timezone(timedelta(hours=7))


def file_json(f: StoredFile) -> dict[str, Any]:
    """The contract's view of a file."""
    return {
        "id": f.id,
        "sha256": f.sha256,
        "size": f.size,
        "content_type": f.content_type,
        "pages": f.pages,
        "name": f.name,
    }


def readable_sql(ctx: Context, principal: Principal) -> ColumnElement[bool]:
    """SQL over ``files``: ``principal`` uploaded the file, or one of the features' file
    access rules lets them read it (an agenda they take part in, a message they see...)."""
    return or_(
        StoredFile.uploader_id == principal.id,
        *(rule(principal, StoredFile.id) for rule in ctx.file_access_rules),
    )


# Readers and the file as parameters, the readers' ids and units from ``users``:
# ``readable_file``'s statement is built once for each kind of reader (roles and clearance,
# which shape the rules), compiled once, and run for every reader of that kind who asks
# about the same file at the same time (a room of tablets opening a document: one query,
# not 95). Building the rules' SQL costs more than the query.
READERS = User.__table__.alias("file_reader")
READER_IDS = bindparam("reader_ids", type_=Integer, expanding=True)
FILE_ID = bindparam("file_id", type_=Integer)


class FileCheck(NamedTuple):
    """Whether one reader may read one file; readers of one kind share a statement."""

    roles: frozenset[str]
    clearance: Confidentiality
    file_id: int
    reader_id: int


def _readable_statement(
    ctx: Context, roles: frozenset[str], clearance: Confidentiality
) -> Select[tuple[int, StoredFile]]:
    statements = runtime(ctx).readable_statements
    statement = statements.get((roles, clearance))
    if statement is None:
        # The rules name the reader's columns as plain text, found in the outer query's
        # FROM at any depth of their subqueries (a column object would be correlated to
        # the nearest enclosing query only, and the rules nest theirs).
        reader = Principal(
            id=cast(int, literal_column(f"{READERS.name}.id", Integer)),
            username="",
            display_name="",
            unit_id=cast(int, literal_column(f"{READERS.name}.unit_id", Integer)),
            roles=roles,
            clearance=clearance,
        )
        statement = (
            select(READERS.c.id, StoredFile)
            .select_from(READERS)
            .join(StoredFile, StoredFile.id == FILE_ID)
            .where(READERS.c.id.in_(READER_IDS), readable_sql(ctx, reader))
        )
        statements[(roles, clearance)] = statement
    return statement


async def read_file_checks(
    ctx: Context, checks: Sequence[FileCheck]
) -> dict[FileCheck, StoredFile | None]:
    """Each check's file, or None where the file does not exist or the reader may not read
    it: one statement for each kind of reader and file, all in one read session."""
    groups: dict[tuple[frozenset[str], Confidentiality, int], list[FileCheck]] = {}
    for check in checks:
        groups.setdefault((check.roles, check.clearance, check.file_id), []).append(check)
    found: dict[FileCheck, StoredFile | None] = dict.fromkeys(checks)
    async with ctx.read() as session:
        for (roles, clearance, file_id), asked in groups.items():
            rows = await session.execute(
                _readable_statement(ctx, roles, clearance),
                {"file_id": file_id, "reader_ids": [check.reader_id for check in asked]},
            )
            for reader_id, f in rows:
                found[FileCheck(roles, clearance, file_id, reader_id)] = f
    return found


class FileChecks(BatchedReads[FileCheck, "StoredFile | None"]):
    """This node's file checks: those asked at the same time answered by one read."""


async def readable_file(ctx: Context, principal: Principal, file_id: int) -> StoredFile:
    """The file, or 404 when it does not exist or the principal may not read it: the row
    and the permission in one query, shared with whoever asks at the same time."""
    checks = ctx.runtimes.setdefault(FileChecks, lambda: FileChecks(partial(read_file_checks, ctx)))
    check = FileCheck(principal.roles, principal.clearance, file_id, principal.id)
    f = await checks.get(check)
    if f is None:
        raise NotFound(f"No file {file_id}.", code="file_not_found")
    return f


async def may_read_file(ctx: Context, principal: Principal, file_id: int) -> bool:
    """True when the file exists and ``principal`` may read it."""
    try:
        await readable_file(ctx, principal, file_id)
    except NotFound:
        return False
    return True


async def page_source(ctx: Context, principal: Principal, file_id: int) -> StoredFile:
    """``readable_file`` for a page image: a grant found lately is used again (for
    ``page_grant_cache_secs``), so a tablet turning pages or downloading a document for
    offline reading is checked once, not for every page."""
    grants = runtime(ctx).page_grants
    f = grants.get(principal.id, file_id)
    if f is None:
        f = await readable_file(ctx, principal, file_id)
        grants.put(principal.id, f)
    return f


async def require_attachable(
    ctx: Context, session: AsyncSession, principal: Principal, file_ids: Sequence[int]
) -> list[StoredFile]:
    """The files ``principal`` wants to attach, in the given order.

    Every id must name a file the principal may read; an id given twice is refused too.
    Either way: 422 ``unknown_attachment`` naming the first offending id.
    """
    seen: set[int] = set()
    for file_id in file_ids:
        if file_id in seen:
            raise Unprocessable(
                f"Attachment {file_id} is listed twice.",
                code="unknown_attachment",
                details={"file_id": file_id, "reason": "duplicate"},
            )
        seen.add(file_id)
    if not file_ids:
        return []
    rows = await session.scalars(
        select(StoredFile).where(StoredFile.id.in_(list(seen)), readable_sql(ctx, principal))
    )
    by_id = {row.id: row for row in rows}
    result: list[StoredFile] = []
    for file_id in file_ids:
        f = by_id.get(file_id)
        if f is None:
            raise Unprocessable(
                f"There is no file {file_id} you may attach.",
                code="unknown_attachment",
                details={"file_id": file_id, "reason": "unknown"},
            )
        result.append(f)
    return result


# --- uploads ---------------------------------------------------------------------------


async def upload_file(ctx: Context, principal: Principal, received: ReceivedFile) -> StoredFile:
    """Check an upload that is on disk, keep its content by SHA-256 and record it.

    A PDF's text is not read here: it is queued, and read once the upload is answered.

    The temporary file is consumed: moved to its content address on success, removed on
    any failure, so a refused upload leaves nothing behind. 422 ``unsupported_type``,
    ``content_type_mismatch`` or ``invalid_pdf``; the audit log gets ``file.upload``.
    """
    rt = runtime(ctx)
    try:
        kind = content_types.resolve_kind(received.declared_type, received.filename, received.head)
        if kind.deep:
            await asyncio.to_thread(content_types.check_content, kind, received.head, received.temp)
        else:
            content_types.check_content(kind, received.head, received.temp)
        pages: int | None = None
        title = ""
        text = ""
        text_pending = False
        signatures = None
        if kind.content_type == content_types.PDF:
            info = await _inspect(rt, received.temp)
            pages, title = info["pages"], info["title"]
            # Its text is read for search once this upload is answered (server.files.text).
            text_pending = True
            signatures = await signed_uploads.check_upload(ctx, received.temp)
        elif kind.content_type.startswith("text/"):
            text = await asyncio.to_thread(
                _read_text, received.temp, ctx.settings.max_extracted_text_chars
            )
        await asyncio.to_thread(rt.store.keep, received.temp, received.sha256)
    except BaseException:
        discard(received.temp)
        raise
    async with ctx.write() as w:
        row = StoredFile(
            sha256=received.sha256,
            size=received.size,
            content_type=kind.content_type,
            name=received.filename,
            pages=pages,
            title=title[:MAX_TITLE_CHARS],
            text=text,
            text_pending=text_pending,
            uploader_id=principal.id,
            created_at=w.now,
        )
        w.session.add(row)
        await w.session.flush()
        signed_uploads.record(w, row.id, signatures)
        await w.audit(
            principal.id,
            "file.upload",
            f"file:{row.id}",
            {
                "file_id": row.id,
                "sha256": row.sha256,
                "size": row.size,
                "content_type": row.content_type,
                "name": row.name,
                "pages": row.pages,
            },
        )
    if pages:
        rt.render_ahead(row.sha256, pages)
    if text_pending:
        rt.read_text_later(row.id)
    return row


async def _inspect(rt: FilesRuntime, path: Path) -> dict[str, Any]:
    try:
        return await rt.inspect_pdf(path)
    except JobRejected as exc:
        raise Unprocessable(f"The PDF cannot be accepted: {exc}.", code="invalid_pdf") from exc
    except WorkerTimeout as exc:
        raise Unprocessable(
            "The PDF took too long to check and was refused.", code="invalid_pdf"
        ) from exc
    except WorkerCrashed as exc:
        raise Unprocessable(f"The PDF could not be checked: {exc}.", code="invalid_pdf") from exc


def _read_text(path: Path, limit: int) -> str:
    with path.open("r", encoding="utf-8-sig", errors="replace") as f:
        return f.read(limit).replace("\x00", "")


# --- reading ---------------------------------------------------------------------------


async def page_image(ctx: Context, f: StoredFile, page: int, width: int, fmt: str = "png") -> Path:
    """The rendered PNG or WebP of a page the caller may read (404 ``page_not_found``)."""
    if f.pages is None or not 1 <= page <= f.pages:
        raise NotFound(f"File {f.id} has no page {page}.", code="page_not_found")
    rendered = runtime(ctx).store.render_path(f.sha256, page, width, fmt)
    if not rendered.is_file():
        content_path(ctx, f)
    try:
        return await runtime(ctx).page_image(f.sha256, page, width, fmt)
    except RenderFailed as exc:
        raise Unprocessable(
            f"Page {page} could not be rendered: {exc}.", code="render_failed"
        ) from exc


async def page_bytes(ctx: Context, f: StoredFile, page: int, width: int, fmt: str = "png") -> bytes:
    """The rendered image of a page as bytes, from memory when it was asked for lately."""
    rt = runtime(ctx)
    data = rt.remembered_page(f.sha256, page, width, fmt)
    if data is None:
        path = await page_image(ctx, f, page, width, fmt)
        data = await asyncio.to_thread(path.read_bytes)
        rt.remember_page(f.sha256, page, width, fmt, data)
    return data


def content_path(ctx: Context, f: StoredFile) -> Path:
    """Where the bytes of ``f`` are; 404 ``content_missing`` if they are not on this node
    (a data dir restored without its files, or not shared between nodes)."""
    path = runtime(ctx).store.blob_path(f.sha256)
    if not path.is_file():
        log.error("the content of file %d (%s) is missing from %s", f.id, f.sha256, path)
        raise NotFound(
            f"The content of file {f.id} is missing on this server.", code="content_missing"
        )
    return path


async def stamped_copy(ctx: Context, principal: Principal, f: StoredFile) -> Path:
    """A copy of PDF ``f`` stamped for ``principal``, audited as ``file.download``.

    The copy is a temporary file; the caller removes it once sent.
    """
    async with ctx.read() as session:
        unit = await session.get(Unit, principal.unit_id)
    unit_name = unit.name if unit is not None else ""
    content_path(ctx, f)
    at = ctx.clock.now()
    when = at.astimezone(STAMP_TIMEZONE).strftime("%d/%m/%Y %H:%M") + " (UTC+7)"
    footer = f"Bản của {principal.display_name} · {unit_name} · tải lúc {when} · Diên Hồng"
    metadata = {
        "DienHongReader": principal.display_name,
        "DienHongReaderUsername": principal.username,
        "DienHongReaderUnit": unit_name,
        "DienHongDownloadedAt": at.isoformat(),
        "DienHongFileId": str(f.id),
    }
    try:
        path = await runtime(ctx).stamp_pdf(f.sha256, footer, principal.display_name, metadata)
    except (JobRejected, WorkerTimeout, WorkerCrashed) as exc:
        raise Unprocessable(
            f"A stamped copy could not be made: {exc}.", code="stamp_failed"
        ) from exc
    try:
        async with ctx.write() as w:
            await w.audit(
                principal.id,
                "file.download",
                f"file:{f.id}",
                {
                    "file_id": f.id,
                    "sha256": f.sha256,
                    "stamped": True,
                    "reader": principal.display_name,
                    "unit": unit_name,
                    "stamped_at": at.isoformat(),
                },
            )
    except BaseException:
        discard(path)
        raise
    return path
