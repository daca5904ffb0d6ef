"""Signed minutes: after the session closes, the secretary, then the chair, then the
organisation sign the minutes PDF; the signed minutes are then the record.

The first signature freezes the minutes as laid out by ``meeting.minutes`` at that
moment; every later step signs those stored bytes (an incremental update each), and
``GET …/minutes.pdf`` returns them from then on. The PIN comes in the request body, is
handed to the token and forgotten: it is never stored, logged or echoed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from meeting.minutes import gather_minutes, render_minutes
from meeting.models import CHAIR_ROLES, OFFICER_ROLES, MeetingState, ParticipantRole
from meeting.participants import meeting_subject, meeting_topic, require_role, require_visible
from server.auth.principal import Principal
from server.context import Context
from server.errors import ApiError, BadRequest, Conflict
from server.signing.config import organisation_key, person_key
from server.signing.documents import (
    Step,
    add_signature,
    find_document,
    read_content,
    signature_json,
    signatures_of,
)
from server.signing.errors import SigningNotConfigured

log = logging.getLogger("dienhong.signing")

KIND = "minutes"
# The order of signatures on the minutes.
STEPS = ("secretary", "chair", "organisation")
REASON = "Biên bản kỳ họp"


def _after(step: str) -> str | None:
    index = STEPS.index(step)
    return STEPS[index + 1] if index + 1 < len(STEPS) else None


async def minutes_status(ctx: Context, actor: Principal, meeting_id: int) -> dict[str, Any]:
    """Where the signing of a meeting's minutes stands (visible to its participants)."""
    async with ctx.read() as session:
        await require_visible(session, meeting_id, actor)
        document = await find_document(session, KIND, meeting_subject(meeting_id))
        rows = await signatures_of(session, document.id) if document is not None else []
    return {
        "meeting_id": meeting_id,
        "state": "unsigned"
        if document is None
        else ("signed" if document.next_step is None else "signing"),
        "next_step": STEPS[0] if document is None else document.next_step,
        "sha256": document.sha256 if document is not None else None,
        "signatures": [signature_json(row) for row in rows],
    }


async def signed_minutes(ctx: Context, actor: Principal, meeting_id: int) -> bytes | None:
    """The stored signed minutes, or None while nobody has signed them."""
    async with ctx.read() as session:
        await require_visible(session, meeting_id, actor)
        document = await find_document(session, KIND, meeting_subject(meeting_id))
    if document is None:
        return None
    return await asyncio.to_thread(read_content, ctx.settings, document)


async def sign_minutes(
    ctx: Context, actor: Principal, meeting_id: int, pin: str | None
) -> dict[str, Any]:
    """Add the caller's signature to the minutes of a closed meeting.

    The secretary signs first and the chair second, each with the PIN of their own
    token; right after the chair the organisation's seal is added when one is set (if it
    fails, the chair or an administrator retries the ``organisation`` step, no PIN).
    409 ``meeting_not_closed`` / ``minutes_signed`` / ``signature_conflict``; 403 when
    the step is not the caller's; the signing errors of ``server.signing.errors``.
    """
    subject = meeting_subject(meeting_id)
    async with ctx.read() as session:
        meeting = await require_visible(session, meeting_id, actor)
        if meeting.lifecycle is not MeetingState.CLOSED:
            raise Conflict(
                "The minutes are signed once the session is closed.", code="meeting_not_closed"
            )
        document = await find_document(session, KIND, subject)
        step = STEPS[0] if document is None else document.next_step
        if step is None:
            raise Conflict("The minutes are already signed by everyone.", code="minutes_signed")
        if step == "secretary":
            await require_role(
                session, meeting, actor, frozenset({ParticipantRole.SECRETARY}), "sign first"
            )
        elif step == "chair":
            await require_role(session, meeting, actor, CHAIR_ROLES, "sign second")
        elif not actor.is_admin:
            await require_role(
                session, meeting, actor, OFFICER_ROLES, "have the organisation's seal added"
            )
    unsigned = None
    if document is None:
        data = await gather_minutes(ctx, actor, meeting_id)
        unsigned = await asyncio.to_thread(render_minutes, data)
    if step == "organisation":
        await _seal(ctx, actor, subject)
    else:
        if not pin:
            raise BadRequest("Give the PIN of your signing token.", code="pin_required")
        key = person_key(ctx.settings, actor.username)
        await add_signature(
            ctx,
            KIND,
            subject,
            unsigned,
            Step(
                name=step,
                key=key,
                secret=pin,
                signer_id=actor.id,
                reason=REASON,
                next_step=_after(step),
            ),
            actor_id=actor.id,
            topic=meeting_topic(meeting_id),
        )
        if step == "chair" and organisation_key(ctx.settings) is not None:
            try:
                await _seal(ctx, actor, subject)
            except ApiError as exc:
                log.warning(
                    "the organisation's seal on the minutes of %s failed: %s", subject, exc.message
                )
    return await minutes_status(ctx, actor, meeting_id)


async def _seal(ctx: Context, actor: Principal, subject: str) -> None:
    seal = organisation_key(ctx.settings)
    if seal is None:
        raise SigningNotConfigured(
            "The organisation's signing key is not configured "
            "(DIENHONG_SIGNING_ORG_TOKEN_LABEL or "
            "DIENHONG_SIGNING_ORG_PKCS12)."
        )
    key, secret = seal
    meeting_id = int(subject.split(":", 1)[1])
    await add_signature(
        ctx,
        KIND,
        subject,
        None,
        Step(
            name="organisation",
            key=key,
            secret=secret,
            signer_id=None,
            reason=REASON,
            next_step=None,
        ),
        actor_id=actor.id,
        topic=meeting_topic(meeting_id),
    )
