"""The agenda: ordered items with nested sub-items, planned durations and documents.

Chairs and secretaries edit and reorder it before and during the session. Every change
sends ``agenda.changed`` with the whole agenda (it is small), so a tablet replaces its copy
instead of patching it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from meeting.events import (
    emit_agenda_changed,
    emit_agenda_current_changed,
    emit_presentation_changed,
)
from meeting.models import OFFICER_ROLES, AgendaDocument, AgendaItem, Meeting
from meeting.participants import (
    meeting_subject,
    require_open,
    require_role,
    require_visible,
)
from meeting.preparation_preload import after_agenda_change
from server.auth.principal import Principal
from server.context import Context, Write
from server.errors import Unprocessable
from server.files.models import StoredFile
from server.files.service import require_attachable


def document_json(f: StoredFile) -> dict[str, Any]:
    return {
        "id": f.id,
        "name": f.name,
        "title": f.title,
        "pages": f.pages,
        "content_type": f.content_type,
        "size": f.size,
    }


async def agenda_json(session: AsyncSession, meeting_id: int) -> list[dict[str, Any]]:
    """The agenda as a tree: top-level items in order, each with ``children``."""
    items = (
        (
            await session.execute(
                select(AgendaItem)
                .where(AgendaItem.meeting_id == meeting_id)
                .order_by(AgendaItem.position, AgendaItem.id)
            )
        )
        .scalars()
        .all()
    )
    docs = (
        await session.execute(
            select(AgendaDocument.item_id, StoredFile)
            .join(StoredFile, StoredFile.id == AgendaDocument.file_id)
            .where(AgendaDocument.meeting_id == meeting_id)
            .order_by(AgendaDocument.item_id, AgendaDocument.position)
        )
    ).all()
    documents: dict[int, list[dict[str, Any]]] = {}
    for item_id, f in docs:
        documents.setdefault(item_id, []).append(document_json(f))
    nodes: dict[int, dict[str, Any]] = {}
    for item in items:
        nodes[item.id] = {
            "id": item.id,
            "parent_id": item.parent_id,
            "position": item.position,
            "title": item.title,
            "planned_minutes": item.planned_minutes,
            "document_ids": [d["id"] for d in documents.get(item.id, [])],
            "documents": documents.get(item.id, []),
            "children": [],
        }
    roots: list[dict[str, Any]] = []
    for item in items:
        node = nodes[item.id]
        if item.parent_id is None:
            roots.append(node)
        else:
            nodes[item.parent_id]["children"].append(node)
    return roots


async def item_document_ids(session: AsyncSession, item_id: int) -> list[int]:
    rows = await session.execute(
        select(AgendaDocument.file_id)
        .where(AgendaDocument.item_id == item_id)
        .order_by(AgendaDocument.position)
    )
    return [int(x) for x in rows.scalars()]


async def require_item(session: AsyncSession, meeting_id: int, item_id: int) -> AgendaItem:
    """An item of this meeting, or 422 ``agenda_item_not_found``."""
    item = await session.get(AgendaItem, item_id)
    if item is None or item.meeting_id != meeting_id:
        raise Unprocessable(
            f"Meeting {meeting_id} has no agenda item {item_id}.", code="agenda_item_not_found"
        )
    return item


async def _depth(session: AsyncSession, item: AgendaItem) -> int:
    depth = 1
    parent_id = item.parent_id
    while parent_id is not None:
        parent = await session.get(AgendaItem, parent_id)
        if parent is None:
            break
        depth += 1
        parent_id = parent.parent_id
    return depth


async def _siblings(
    session: AsyncSession, meeting_id: int, parent_id: int | None
) -> list[AgendaItem]:
    stmt = select(AgendaItem).where(AgendaItem.meeting_id == meeting_id)
    stmt = stmt.where(
        AgendaItem.parent_id.is_(None) if parent_id is None else AgendaItem.parent_id == parent_id
    )
    return list(
        (await session.execute(stmt.order_by(AgendaItem.position, AgendaItem.id))).scalars()
    )


async def _set_documents(
    ctx: Context,
    w: Write,
    actor: Principal,
    meeting: Meeting,
    item: AgendaItem,
    document_ids: Sequence[int],
) -> None:
    if len(document_ids) > ctx.settings.meeting_max_documents_per_item:
        raise Unprocessable(
            f"An agenda item has at most {ctx.settings.meeting_max_documents_per_item} documents.",
            code="too_many_documents",
        )
    await require_attachable(ctx, w.session, actor, document_ids)
    await w.session.execute(delete(AgendaDocument).where(AgendaDocument.item_id == item.id))
    for position, file_id in enumerate(document_ids):
        w.session.add(
            AgendaDocument(
                item_id=item.id, meeting_id=meeting.id, file_id=file_id, position=position
            )
        )


async def _changed(w: Write, meeting_id: int) -> list[dict[str, Any]]:
    await w.session.flush()
    agenda = await agenda_json(w.session, meeting_id)
    await emit_agenda_changed(w, meeting_id, agenda=agenda)
    return agenda


async def _documents_changed(ctx: Context, w: Write, meeting: Meeting) -> list[dict[str, Any]]:
    agenda = await _changed(w, meeting.id)
    await after_agenda_change(ctx, w, meeting)
    return agenda


async def _editable(w: Write, meeting_id: int, actor: Principal) -> Meeting:
    meeting = await require_visible(w.session, meeting_id, actor, lock=True)
    await require_role(w.session, meeting, actor, OFFICER_ROLES, "edit the agenda")
    require_open(meeting)
    return meeting


async def add_item(
    ctx: Context,
    actor: Principal,
    meeting_id: int,
    *,
    title: str,
    document_ids: Sequence[int],
    parent_id: int | None = None,
    planned_minutes: int = 0,
    position: int | None = None,
) -> dict[str, Any]:
    """Add an item (at the end of its siblings, or at ``position``); chair or secretary."""
    async with ctx.write() as w:
        meeting = await _editable(w, meeting_id, actor)
        count = (
            await w.session.execute(
                select(func.count())
                .select_from(AgendaItem)
                .where(AgendaItem.meeting_id == meeting_id)
            )
        ).scalar_one()
        if count >= ctx.settings.meeting_max_agenda_items:
            raise Unprocessable(
                f"An agenda has at most {ctx.settings.meeting_max_agenda_items} items.",
                code="agenda_full",
            )
        if parent_id is not None:
            parent = await require_item(w.session, meeting_id, parent_id)
            if await _depth(w.session, parent) >= ctx.settings.meeting_agenda_max_depth:
                raise Unprocessable(
                    f"Agenda items nest at most {ctx.settings.meeting_agenda_max_depth} deep.",
                    code="agenda_too_deep",
                )
        siblings = await _siblings(w.session, meeting_id, parent_id)
        item = AgendaItem(
            meeting_id=meeting_id,
            parent_id=parent_id,
            title=title,
            planned_minutes=planned_minutes,
            position=len(siblings),
            created_at=w.now,
        )
        w.session.add(item)
        await w.session.flush()
        await _set_documents(ctx, w, actor, meeting, item, document_ids)
        if position is not None and position < len(siblings):
            ordered = [*siblings[:position], item, *siblings[position:]]
            for index, sibling in enumerate(ordered):
                sibling.position = index
        await w.audit(
            actor.id,
            "meeting.agenda.add",
            meeting_subject(meeting_id),
            {
                "item_id": item.id,
                "title": title,
                "parent_id": parent_id,
                "document_ids": list(document_ids),
                "planned_minutes": planned_minutes,
            },
        )
        await (_documents_changed(ctx, w, meeting) if document_ids else _changed(w, meeting_id))
        result = {
            "id": item.id,
            "parent_id": parent_id,
            "position": item.position,
            "title": title,
            "planned_minutes": planned_minutes,
            "document_ids": list(document_ids),
        }
    return result


async def update_item(
    ctx: Context,
    actor: Principal,
    meeting_id: int,
    item_id: int,
    *,
    title: str | None = None,
    document_ids: Sequence[int] | None = None,
    planned_minutes: int | None = None,
) -> dict[str, Any]:
    """Change an item's title, planned duration or documents; chair or secretary."""
    async with ctx.write() as w:
        meeting = await _editable(w, meeting_id, actor)
        item = await require_item(w.session, meeting_id, item_id)
        changes: dict[str, Any] = {"item_id": item_id}
        if title is not None:
            item.title = title
            changes["title"] = title
        if planned_minutes is not None:
            item.planned_minutes = planned_minutes
            changes["planned_minutes"] = planned_minutes
        if document_ids is not None:
            await _set_documents(ctx, w, actor, meeting, item, document_ids)
            changes["document_ids"] = list(document_ids)
        await w.audit(actor.id, "meeting.agenda.update", meeting_subject(meeting_id), changes)
        await (
            _documents_changed(ctx, w, meeting)
            if document_ids is not None
            else _changed(w, meeting_id)
        )
        result = {
            "id": item.id,
            "parent_id": item.parent_id,
            "position": item.position,
            "title": item.title,
            "planned_minutes": item.planned_minutes,
            "document_ids": await item_document_ids(w.session, item.id),
        }
    return result


async def remove_item(ctx: Context, actor: Principal, meeting_id: int, item_id: int) -> None:
    """Remove an item and its sub-items; chair or secretary.

    The current item and the presentation are cleared when they pointed into what was
    removed (``agenda.current_changed`` / ``presentation.changed`` tell the tablets).
    """
    async with ctx.write() as w:
        meeting = await _editable(w, meeting_id, actor)
        item = await require_item(w.session, meeting_id, item_id)
        removed = {item.id}
        frontier = [item.id]
        while frontier:
            children = (
                (
                    await w.session.execute(
                        select(AgendaItem.id).where(AgendaItem.parent_id.in_(frontier))
                    )
                )
                .scalars()
                .all()
            )
            frontier = [c for c in children if c not in removed]
            removed.update(frontier)
        parent_id = item.parent_id
        await w.session.execute(delete(AgendaDocument).where(AgendaDocument.item_id.in_(removed)))
        await w.session.execute(delete(AgendaItem).where(AgendaItem.id.in_(removed)))
        for index, sibling in enumerate(await _siblings(w.session, meeting_id, parent_id)):
            sibling.position = index
        await w.audit(
            actor.id,
            "meeting.agenda.remove",
            meeting_subject(meeting_id),
            {"item_id": item_id, "removed": sorted(removed)},
        )
        await _changed(w, meeting_id)
        if meeting.current_agenda_item_id in removed:
            meeting.current_agenda_item_id = None
            await emit_agenda_current_changed(w, meeting_id, agenda_item_id=None)
        if meeting.presented_item_id in removed:
            meeting.presented_item_id = None
            meeting.presented_document_id = None
            meeting.presented_page = None
            meeting.presented_by = actor.id
            meeting.presented_at = w.now
            await emit_presentation_changed(w, meeting_id, presentation=None)


async def reorder_items(
    ctx: Context,
    actor: Principal,
    meeting_id: int,
    *,
    parent_id: int | None,
    item_ids: Sequence[int],
) -> list[dict[str, Any]]:
    """Put the children of ``parent_id`` (top level when None) in the given order.

    ``item_ids`` must name exactly those children, each once: 422 ``agenda_mismatch``.
    """
    async with ctx.write() as w:
        await _editable(w, meeting_id, actor)
        if parent_id is not None:
            await require_item(w.session, meeting_id, parent_id)
        siblings = await _siblings(w.session, meeting_id, parent_id)
        by_id = {s.id: s for s in siblings}
        if len(item_ids) != len(set(item_ids)) or set(item_ids) != set(by_id):
            raise Unprocessable(
                "List every item of that level exactly once.",
                code="agenda_mismatch",
                details={"expected": sorted(by_id)},
            )
        for index, item_id in enumerate(item_ids):
            by_id[item_id].position = index
        await w.audit(
            actor.id,
            "meeting.agenda.reorder",
            meeting_subject(meeting_id),
            {"parent_id": parent_id, "item_ids": list(item_ids)},
        )
        agenda = await _changed(w, meeting_id)
    return agenda


async def set_current_item(
    ctx: Context, actor: Principal, meeting_id: int, item_id: int | None
) -> None:
    """Make an item the one being dealt with (None: none); chair or secretary."""
    async with ctx.write() as w:
        meeting = await _editable(w, meeting_id, actor)
        if item_id is not None:
            await require_item(w.session, meeting_id, item_id)
        meeting.current_agenda_item_id = item_id
        await w.audit(
            actor.id, "meeting.agenda.current", meeting_subject(meeting_id), {"item_id": item_id}
        )
        await emit_agenda_current_changed(w, meeting_id, agenda_item_id=item_id)
