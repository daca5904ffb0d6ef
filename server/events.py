"""Builders of the core's own events (``CORE_EVENT_TYPES`` in ``server.realtime.contract``):
services emit them only through these, one per declared type."""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.realtime.contract import builds, payload

if TYPE_CHECKING:
    from server.context import Write
    from server.realtime.log import Event


@builds("user.updated")
async def emit_user_updated(
    w: Write,
    *,
    id: int,
    username: str,
    display_name: str,
    unit_id: int,
    roles: list[str],
    clearance: str,
    is_unit_head: bool,
    active: bool,
    title: str,
) -> Event:
    """On the account's own topic (``user:{id}``)."""
    return await w.emit(
        f"user:{id}",
        "user.updated",
        payload(
            id=id,
            username=username,
            display_name=display_name,
            unit_id=unit_id,
            roles=roles,
            clearance=clearance,
            is_unit_head=is_unit_head,
            active=active,
            title=title,
        ),
    )


@builds("user.sessions_ended")
async def emit_user_sessions_ended(
    w: Write,
    *,
    id: int,
    username: str,
    display_name: str,
    unit_id: int,
    roles: list[str],
    clearance: str,
    is_unit_head: bool,
    active: bool,
    title: str,
    reason: str,
) -> Event:
    return await w.emit(
        f"user:{id}",
        "user.sessions_ended",
        payload(
            id=id,
            username=username,
            display_name=display_name,
            unit_id=unit_id,
            roles=roles,
            clearance=clearance,
            is_unit_head=is_unit_head,
            active=active,
            title=title,
            reason=reason,
        ),
    )


@builds("unit.updated")
async def emit_unit_updated(
    w: Write, *, id: int, name: str, kind: str, parent_id: int | None
) -> Event:
    return await w.emit(
        f"unit:{id}", "unit.updated", payload(id=id, name=name, kind=kind, parent_id=parent_id)
    )


@builds("document.signed")
async def emit_document_signed(
    w: Write,
    topic: str,
    *,
    subject: str,
    kind: str,
    step: str,
    signer: str,
    certificate_sha256: str,
    sha256: str,
    next_step: str | None,
) -> Event:
    """``topic`` is that of the meeting the signed document belongs to."""
    return await w.emit(
        topic,
        "document.signed",
        payload(
            subject=subject,
            kind=kind,
            step=step,
            signer=signer,
            certificate_sha256=certificate_sha256,
            sha256=sha256,
            next_step=next_step,
        ),
    )
