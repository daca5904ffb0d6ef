"""Directives (urgent instructions): issuing, showing, listing (reads and acknowledgements
are in ``messaging.receipts``).

Recipients are resolved to users when the directive is issued and stored, each with the
seq of its ``directive.issued`` event on its ``user:`` topic. A user of a targeted unit
whose clearance is below the directive's level gets nothing, is not counted, and is named
to the sender in ``left_out``. The sender is never a recipient of its own directive.

Who may see what:

* the *sender side* — the sender, and Standing Committee members of the sender's unit
  cleared for the level — sees the content, the receipts and every reply thread;
* a recipient still cleared for the level sees the content and its own unit's thread;
* everyone else is refused (403) without any of the content.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from messaging import visibility
from messaging.attachments import index_attachments, require_readers_cleared
from messaging.events import emit_directive_issued
from messaging.models import (
    Directive,
    DirectiveAttachment,
    DirectiveRecipient,
    SearchKind,
    Urgency,
)
from messaging.runtime import messaging_runtime
from messaging.search import index_document
from messaging.senders import sender_card, sender_cards, unknown_card
from messaging.visibility import is_sender_side
from server.auth.principal import Principal
from server.clock import utc_iso
from server.context import Context
from server.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge, Unprocessable
from server.files.models import StoredFile
from server.files.service import file_json, require_attachable
from server.org.models import Confidentiality, Role, Unit, User
from server.org.service import descendants, list_units

# Directives per page of a box.
MAX_PAGE = 200


@dataclass(frozen=True)
class IssuedDirective:
    id: int
    recipient_count: int
    left_out: list[dict[str, Any]]


@dataclass
class DirectiveAccess:
    """A directive as one principal may see it."""

    directive: Directive
    recipient: DirectiveRecipient | None
    sender_side: bool


def iso(moment: datetime | None) -> str | None:
    return utc_iso(moment) if moment is not None else None


def reminder_interval(ctx: Context, urgency: str) -> timedelta:
    """Time between two reminders for a directive of this urgency (a setting)."""
    intervals = ctx.settings.reminder_intervals
    seconds = intervals.get(urgency, intervals.get(Urgency.NORMAL.value, 24 * 3600))
    return timedelta(seconds=max(1, int(seconds)))


def utf8_len(value: str) -> int:
    return len(value.encode("utf-8"))


def directive_not_found(directive_id: int) -> NotFound:
    return NotFound(f"Directive {directive_id} does not exist.", code="directive_not_found")


async def load_directive(session: AsyncSession, directive_id: int) -> Directive:
    directive = await session.get(Directive, directive_id)
    if directive is None:
        raise directive_not_found(directive_id)
    return directive


async def recipient_row(
    session: AsyncSession, directive_id: int, user_id: int
) -> DirectiveRecipient | None:
    return (
        await session.execute(
            select(DirectiveRecipient).where(
                DirectiveRecipient.directive_id == directive_id,
                DirectiveRecipient.user_id == user_id,
            )
        )
    ).scalar_one_or_none()


async def require_access(
    session: AsyncSession, principal: Principal, directive_id: int
) -> DirectiveAccess:
    """The directive if ``principal`` may read its content (``may_read_directive``);
    404 or 403 otherwise."""
    directive = await load_directive(session, directive_id)
    recipient = await recipient_row(session, directive_id, principal.id)
    return access_of(principal, directive, recipient)


def access_of(
    principal: Principal, directive: Directive, recipient: DirectiveRecipient | None
) -> DirectiveAccess:
    """``require_access`` once the directive and the principal's recipient row (or None)
    are loaded: the rule alone (``may_read_directive``), for callers that load many at once."""
    if visibility.may_read_directive(principal, directive, recipient):
        return DirectiveAccess(directive, recipient, is_sender_side(principal, directive))
    if not visibility.cleared(principal, directive.confidentiality) and (
        recipient is not None
        or principal.id == directive.sender_id
        or _left_out(directive, principal.id)
    ):
        raise Forbidden(
            "Your clearance does not permit this directive.", code="insufficient_clearance"
        )
    # Exactly as for a directive that does not exist: no oracle of other units' ids.
    raise directive_not_found(directive.id)


def _left_out(directive: Directive, user_id: int) -> bool:
    return any(entry.get("user_id") == user_id for entry in directive.left_out or ())


def summary_json(directive: Directive, sender: dict[str, Any]) -> dict[str, Any]:
    """What a box lists: no body. ``sender`` is the sender's card (messaging.senders)."""
    return {
        "id": directive.id,
        "title": directive.title,
        "urgency": directive.urgency,
        "confidentiality": directive.confidentiality,
        "ack_required": directive.ack_required,
        "sender_id": directive.sender_id,
        "sender": sender,
        "issued_at": iso(directive.issued_at),
        "due_at": iso(directive.due_at),
        "recipient_count": directive.recipient_count,
    }


async def attachments_json(session: AsyncSession, directive_id: int) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(StoredFile)
        .join(DirectiveAttachment, DirectiveAttachment.file_id == StoredFile.id)
        .where(DirectiveAttachment.directive_id == directive_id)
        .order_by(DirectiveAttachment.position)
    )
    return [file_json(f) for f in rows.scalars().all()]


def receipt_json(row: DirectiveRecipient) -> dict[str, Any]:
    return {
        "user_id": row.user_id,
        "unit_id": row.unit_id,
        "state": row.state.value,
        "delivered_at": iso(row.delivered_at),
        "read_at": iso(row.read_at),
        "acknowledged_at": iso(row.acknowledged_at),
        "note": row.ack_note,
    }


def _issued_payload(
    directive: Directive, sender: dict[str, Any], attachments: list[dict[str, Any]], body_chars: int
) -> dict[str, Any]:
    truncated = len(directive.body) > body_chars
    return {
        "directive": summary_json(directive, sender)
        | {
            "body": directive.body[:body_chars],
            "body_truncated": truncated,
            "attachments": attachments,
        }
    }


async def issue_directive(
    ctx: Context,
    actor: Principal,
    *,
    title: str,
    body: str,
    urgency: Urgency,
    confidentiality: Confidentiality,
    unit_ids: Sequence[int],
    include_descendants: bool,
    ack_required: bool,
    due_at: datetime | None,
    attachment_ids: Sequence[int],
) -> IssuedDirective:
    """Issue a directive: resolve recipients, store them, send each ``directive.issued``."""
    settings = ctx.settings
    if not actor.has_role(Role.STANDING):
        raise Forbidden("Only the Standing Committee issues directives.", code="not_standing")
    if not actor.clearance.permits(confidentiality):
        raise Forbidden("Your clearance does not permit this level.", code="insufficient_clearance")
    if utf8_len(body) > settings.max_directive_body_bytes:
        raise PayloadTooLarge(
            f"The body is over {settings.max_directive_body_bytes} bytes.", code="body_too_large"
        )
    if not unit_ids:
        raise Unprocessable("Name at least one target unit.", code="empty_targets")
    if due_at is not None and due_at.tzinfo is None:
        raise BadRequest("due_at needs a UTC offset.", code="invalid_request")
    targets = {"unit_ids": sorted(set(unit_ids)), "include_descendants": include_descendants}
    async with ctx.write() as w:
        session = w.session
        if due_at is not None and due_at <= w.now:
            raise Unprocessable("due_at is in the past.", code="due_in_past")
        units = await list_units(session)
        known = {unit.id for unit in units}
        unknown = sorted(set(unit_ids) - known)
        if unknown:
            raise Unprocessable(
                f"Unknown unit ids: {unknown}.", code="unknown_units", details={"unit_ids": unknown}
            )
        chosen = descendants(units, unit_ids) if include_descendants else set(unit_ids)
        users = (
            (
                await session.execute(
                    select(User)
                    .where(User.unit_id.in_(chosen), User.active.is_(True), User.id != actor.id)
                    .order_by(User.unit_id, User.id)
                )
            )
            .scalars()
            .all()
        )
        cleared = [u for u in users if Confidentiality(u.clearance).permits(confidentiality)]
        left_out = [
            {
                "user_id": u.id,
                "username": u.username,
                "display_name": u.display_name,
                "unit_id": u.unit_id,
            }
            for u in users
            if not Confidentiality(u.clearance).permits(confidentiality)
        ]
        if not cleared:
            raise Unprocessable(
                "No user of the targeted units may receive this directive.",
                code="no_recipients",
                details={"left_out": left_out},
            )
        files = await require_attachable(ctx, session, actor, list(attachment_ids))
        await require_readers_cleared(session, files, confidentiality, "directive")
        await index_attachments(session, files, w.now)
        directive = Directive(
            sender_id=actor.id,
            sender_unit_id=actor.unit_id,
            title=title,
            body=body,
            urgency=urgency.value,
            confidentiality=confidentiality.value,
            ack_required=ack_required,
            due_at=due_at,
            issued_at=w.now,
            targets=targets,
            recipient_count=len(cleared),
            left_out=left_out,
        )
        session.add(directive)
        await session.flush()
        for position, f in enumerate(files):
            session.add(
                DirectiveAttachment(directive_id=directive.id, file_id=f.id, position=position)
            )
        payload = _issued_payload(
            directive,
            await sender_card(session, actor.id),
            [file_json(f) for f in files],
            settings.directive_event_body_chars,
        )
        first_reminder = None
        if ack_required:
            first_reminder = w.now + reminder_interval(ctx, urgency.value)
        events = await emit_directive_issued(w, [user.id for user in cleared], **payload)
        rows = [
            {
                "directive_id": directive.id,
                "user_id": user.id,
                "unit_id": user.unit_id,
                "event_seq": events[f"user:{user.id}"].seq,
                "next_reminder_at": first_reminder,
                "reminders_sent": 0,
            }
            for user in cleared
        ]
        await session.execute(insert(DirectiveRecipient), rows)
        await index_document(session, SearchKind.DIRECTIVE, directive.id, f"{title}\n{body}", w.now)
        await w.audit(
            actor.id,
            "directive.issue",
            f"directive:{directive.id}",
            {
                "title": title,
                "urgency": urgency.value,
                "confidentiality": confidentiality.value,
                "targets": targets,
                "recipients": len(cleared),
                "left_out": [e["user_id"] for e in left_out],
                "attachments": [f.id for f in files],
                "due_at": due_at.isoformat() if due_at else None,
            },
        )
        runtime = messaging_runtime(ctx)
        if runtime is not None:
            w.after_commit(runtime.reminders.wake)
    return IssuedDirective(directive.id, len(cleared), left_out)


async def get_directive(ctx: Context, actor: Principal, directive_id: int) -> dict[str, Any]:
    """The whole directive for the sender side and cleared recipients."""
    async with ctx.read() as session:
        access = await require_access(session, actor, directive_id)
        directive = access.directive
        result = summary_json(directive, await sender_card(session, directive.sender_id)) | {
            "body": directive.body,
            "targets": directive.targets,
            "attachments": await attachments_json(session, directive.id),
        }
        if access.recipient is not None:
            result["receipt"] = receipt_json(access.recipient)
        if access.sender_side:
            result["left_out"] = directive.left_out
        return result


async def list_box(
    ctx: Context, actor: Principal, box: str, *, limit: int, before_id: int | None
) -> list[dict[str, Any]]:
    """``inbox``: directives the actor received; ``sent``: those it issued."""
    limit = max(1, min(limit, MAX_PAGE))
    if box not in ("inbox", "sent"):
        raise BadRequest("box is inbox or sent.", code="invalid_box")
    newest_first = Directive.id < before_id if before_id is not None else Directive.id > 0
    result: list[dict[str, Any]] = []
    async with ctx.read() as session:
        if box == "inbox":
            received = await session.execute(
                select(Directive, DirectiveRecipient)
                .join(DirectiveRecipient, DirectiveRecipient.directive_id == Directive.id)
                .where(DirectiveRecipient.user_id == actor.id, newest_first)
                .order_by(Directive.id.desc())
                .limit(limit)
            )
            pairs = received.tuples().all()
            cards = await sender_cards(session, (d.sender_id for d, _ in pairs))
            for directive, receipt in pairs:
                entry = summary_json(
                    directive, cards.get(directive.sender_id) or unknown_card(directive.sender_id)
                )
                if not visibility.cleared(actor, directive.confidentiality):
                    # Clearance lowered since: keep the entry, hide what it says.
                    entry["title"] = None
                    entry["restricted"] = True
                entry["receipt"] = receipt_json(receipt)
                result.append(entry)
            return result
        directives = (
            (
                await session.execute(
                    select(Directive)
                    .where(Directive.sender_id == actor.id, newest_first)
                    .order_by(Directive.id.desc())
                    .limit(limit)
                )
            )
            .scalars()
            .all()
        )
        counts = await rollup_counts(session, [d.id for d in directives])
        card = await sender_card(session, actor.id)
        for directive in directives:
            result.append(
                summary_json(directive, card) | {"progress": counts.get(directive.id, {})}
            )
        return result


async def rollup_counts(
    session: AsyncSession, directive_ids: Sequence[int]
) -> dict[int, dict[str, int]]:
    if not directive_ids:
        return {}
    rows = await session.execute(
        select(
            DirectiveRecipient.directive_id,
            func.count(),
            func.count(DirectiveRecipient.delivered_at),
            func.count(DirectiveRecipient.read_at),
            func.count(DirectiveRecipient.acknowledged_at),
        )
        .where(DirectiveRecipient.directive_id.in_(list(directive_ids)))
        .group_by(DirectiveRecipient.directive_id)
    )
    return {
        directive_id: {
            "recipients": total,
            "delivered": delivered,
            "read": read,
            "acknowledged": acked,
        }
        for directive_id, total, delivered, read, acked in rows.all()
    }


async def unit_names(session: AsyncSession, unit_ids: Sequence[int]) -> dict[int, str]:
    if not unit_ids:
        return {}
    rows = await session.execute(select(Unit.id, Unit.name).where(Unit.id.in_(list(unit_ids))))
    return {unit_id: name for unit_id, name in rows.all()}
