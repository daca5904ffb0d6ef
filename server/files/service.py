"""Files service: who may read a file, attaching files to other objects, storing uploads.

A file is readable by its uploader and by anyone one of the features' file access checks
lets through (a directive's recipient, a meeting's delegate...). Everyone else is told the
file does not exist (404), so ids leak nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.principal import Principal
from server.context import Context
from server.errors import NotFound, Unprocessable
from server.files.models import StoredFile


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


async def _granted_by_features(ctx: Context, principal: Principal, file_id: int) -> bool:
    for check in ctx.file_access_checks:
        if await check(ctx, principal, file_id):
            return True
    return False


async def may_read(ctx: Context, principal: Principal, f: StoredFile) -> bool:
    """True when ``principal`` uploaded ``f`` or an object attaching it is visible to them."""
    if f.uploader_id == principal.id:
        return True
    return await _granted_by_features(ctx, principal, f.id)


async def may_read_file(ctx: Context, principal: Principal, file_id: int) -> bool:
    """True when the file exists and ``principal`` may read it."""
    async with ctx.read() as session:
        f = await session.get(StoredFile, file_id)
    if f is None:
        return False
    return await may_read(ctx, principal, f)


async def readable_file(ctx: Context, principal: Principal, file_id: int) -> StoredFile:
    """The file, or 404 when it does not exist or the principal may not read it."""
    async with ctx.read() as session:
        f = await session.get(StoredFile, file_id)
    if f is None or not await may_read(ctx, principal, f):
        raise NotFound(f"No file {file_id}.", code="file_not_found")
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
            raise Unprocessable(f"Attachment {file_id} is listed twice.",
                                code="unknown_attachment",
                                details={"file_id": file_id, "reason": "duplicate"})
        seen.add(file_id)
    if not file_ids:
        return []
    rows = (
        await session.execute(select(StoredFile).where(StoredFile.id.in_(list(seen))))
    ).scalars().all()
    by_id = {row.id: row for row in rows}
    result: list[StoredFile] = []
    for file_id in file_ids:
        f = by_id.get(file_id)
        if f is None or not await may_read(ctx, principal, f):
            raise Unprocessable(f"There is no file {file_id} you may attach.",
                                code="unknown_attachment",
                                details={"file_id": file_id, "reason": "unknown"})
        result.append(f)
    return result
