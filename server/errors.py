"""Domain errors and their HTTP shape: ``{"error": {"code", "message"}}``.

Services raise these; routes never build error responses by hand. The exception handler
installed by ``create_app`` turns any ``ApiError`` into the contract's JSON shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ApiError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    """The request is valid but the current state does not allow it (illegal transition)."""

    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    code = "too_large"


class Unprocessable(ApiError):
    """Valid JSON that breaks a rule of the domain."""

    status = 422
    code = "unprocessable"


class TooManyRequests(ApiError):
    status = 429
    code = "rate_limited"


@dataclass(frozen=True)
class ErrorCode:
    """One code of the catalogue: the HTTP statuses it comes with, and what it means.

    A code with no status is only sent in a WebSocket ``error`` frame.
    """

    statuses: tuple[int, ...]
    meaning: str


# Every error code the server answers, in one place. The web client has a Vietnamese and an
# English message for each (web_client/static/js/i18n.js); tests keep the three in step
# and check that every code raised in the code base is here.
ERROR_CATALOGUE: dict[str, ErrorCode] = {
    "agenda_full": ErrorCode((422,), "The agenda has too many items."),
    "agenda_item_not_found": ErrorCode((422,), "That agenda item is not on this meeting's agenda."),
    "agenda_mismatch": ErrorCode((422,), "List every item of that level exactly once."),
    "agenda_too_deep": ErrorCode((422,), "Agenda items are nested too deeply."),
    "already_requested": ErrorCode((409,), "You are already waiting for the floor."),
    "already_voted": ErrorCode((409,), "You have already voted in this poll; a ballot is final."),
    "annotation_failed": ErrorCode((422,), "The annotated copy could not be made."),
    "annotation_not_found": ErrorCode((404,), "That annotation does not exist."),
    "annotations_too_large": ErrorCode(
        (413,), "You have too many annotations on this document; remove some first."
    ),
    "attachment_too_confidential": ErrorCode(
        (422,), "Some readers of that place may not read this attachment."
    ),
    "bad_request": ErrorCode((400,), "The request is malformed."),
    "body_too_large": ErrorCode((413,), "The text is too long."),
    "busy": ErrorCode((429,), "The server is busy; try again shortly."),
    "certificate_expired": ErrorCode(
        (422,), "The signer's certificate is not valid at this time; nothing was signed."
    ),
    "certificate_invalid": ErrorCode((422,), "The signer's certificate cannot sign."),
    "certificate_revoked": ErrorCode(
        (422,), "The signer's certificate is revoked; nothing was signed."
    ),
    "certificate_untrusted": ErrorCode(
        (422,), "The signer's certificate was not issued by a trusted authority."
    ),
    "chair_required": ErrorCode((422,), "A meeting needs a chair."),
    "channel_not_found": ErrorCode((404,), "This conversation does not exist."),
    "client_msg_id_reused": ErrorCode(
        (409,), "This message was already sent with different content."
    ),
    "conflict": ErrorCode((409,), "This is not possible in the current state."),
    "content_missing": ErrorCode((404,), "The file's content is missing on this server."),
    "content_type_mismatch": ErrorCode((422,), "The file's content does not match its type."),
    "demo_exists": ErrorCode((409,), "The demo data is already here."),
    "directive_not_found": ErrorCode((404,), "This instruction does not exist."),
    "document_not_found": ErrorCode((404,), "No such signed document."),
    "document_not_on_item": ErrorCode((422,), "This document is not attached to the agenda item."),
    "due_in_past": ErrorCode((422,), "The deadline is in the past."),
    "duplicate_options": ErrorCode((422,), "The options must differ from each other."),
    "duplicate_participant": ErrorCode((422,), "A person is listed twice."),
    "empty_file": ErrorCode((422,), "The file is empty."),
    "empty_message": ErrorCode((422,), "Write some text or attach a file."),
    "empty_query": ErrorCode((400,), "Type at least one word to search for."),
    "empty_targets": ErrorCode((422,), "Choose at least one receiving unit."),
    "file_not_found": ErrorCode((404,), "This file does not exist."),
    "floor_taken": ErrorCode((409,), "Someone else has the floor; finish that speech first."),
    "forbidden": ErrorCode((403,), "You are not allowed to do this."),
    "http_error": ErrorCode((400,), "The request could not be handled."),
    "idempotency_key_reused": ErrorCode((409,), "This ballot key was already used; try again."),
    "illegal_transition": ErrorCode((409,), "The meeting cannot change to that state now."),
    "import_invalid": ErrorCode((422,), "The import file has problems; nothing was written."),
    "import_too_large": ErrorCode((413, 422), "The import file is too large."),
    "insufficient_clearance": ErrorCode((403,), "Your security clearance does not permit this."),
    "internal_error": ErrorCode((500,), "The server ran into an error; try again."),
    "invalid_box": ErrorCode((400,), "Unknown mailbox."),
    "invalid_credentials": ErrorCode((401,), "Wrong username or password."),
    "invalid_demo_size": ErrorCode((422,), "The demo size is out of range."),
    "invalid_duration": ErrorCode((422,), "The duration is out of range."),
    "invalid_id": ErrorCode((400,), "The address names no valid item."),
    "invalid_import_file": ErrorCode((400,), "The import file cannot be read as CSV or XLSX."),
    "invalid_json": ErrorCode((400,), "The request data is malformed."),
    "invalid_kind": ErrorCode((422,), "This kind of conversation cannot be made here."),
    "invalid_max_choices": ErrorCode(
        (422,), "The number of choices must be between 1 and the number of options."
    ),
    "invalid_members": ErrorCode((422,), "A direct conversation has exactly one other person."),
    "invalid_multipart": ErrorCode((400,), "The upload is malformed; choose the file again."),
    "invalid_options": ErrorCode((422,), "The options of the poll are not valid."),
    "invalid_pdf": ErrorCode((422,), "This PDF cannot be accepted."),
    "invalid_query": ErrorCode((400,), "A filter of the query is not valid."),
    "invalid_quorum": ErrorCode((422,), "The quorum rule is not valid."),
    "invalid_request": ErrorCode((400,), "Some of the data entered is not valid."),
    "invalid_sdp": ErrorCode((400,), "The audio/video connection could not be set up."),
    "invalid_text": ErrorCode((400,), "The text holds characters that are not valid."),
    "invalid_title": ErrorCode((422,), "A title is required."),
    "invalid_token": ErrorCode((401,), "Your session is no longer valid; please sign in again."),
    "invalid_width": ErrorCode((400,), "The image width is out of range."),
    "locked_out": ErrorCode((429,), "Too many failed sign-ins; wait a moment and try again."),
    "media_full": ErrorCode((409,), "The remote session is full."),
    "media_hall_connected": ErrorCode((409,), "The hall's sound desk is already connected."),
    "media_session_not_found": ErrorCode((404,), "This audio/video connection no longer exists."),
    "meeting_closed": ErrorCode((409,), "The meeting is closed; nothing in it can change."),
    "meeting_not_closed": ErrorCode((409,), "The minutes are signed once the session is closed."),
    "meeting_not_found": ErrorCode((404,), "This meeting does not exist."),
    "meeting_not_in_session": ErrorCode((409,), "The meeting is not in session."),
    "message_not_found": ErrorCode((404,), "This message does not exist."),
    "method_not_allowed": ErrorCode((405,), "This action is not available here."),
    "minutes_signed": ErrorCode((409,), "The minutes are already signed by everyone."),
    "missing_file": ErrorCode((400,), "Choose a file to upload."),
    "missing_token": ErrorCode((401,), "Please sign in."),
    "muted_by_chair": ErrorCode(
        (403,), "The chair muted your microphone; unmute it once the chair asks."
    ),
    "name_required": ErrorCode((422,), "A group needs a name."),
    "no_recipients": ErrorCode((422,), "Nobody in the chosen units may receive this instruction."),
    "no_vote": ErrorCode((403,), "Only the delegates of the meeting vote."),
    "not_a_contact": ErrorCode((403,), "You share no conversation with some of these people."),
    "not_a_document": ErrorCode((422,), "This file is not a paged document."),
    "not_a_member": ErrorCode((403,), "You are not a member of this conversation."),
    "not_a_participant": ErrorCode((403, 422), "That person does not take part in the meeting."),
    "not_a_recipient": ErrorCode((403,), "You are not a recipient of this directive."),
    "not_author": ErrorCode((403,), "Only the author may change a message."),
    "not_chair": ErrorCode((403,), "Only the chair may do this."),
    "not_checked_in": ErrorCode((409,), "Check in to the meeting before voting."),
    "not_found": ErrorCode((404,), "Not found."),
    "not_in_electorate": ErrorCode(
        (403,), "You were not among those entitled to vote when the poll opened."
    ),
    "not_muted": ErrorCode((409,), "That microphone is not muted."),
    "not_officer": ErrorCode((403,), "Only the chair or a secretary may do this."),
    "not_organiser": ErrorCode((403,), "You may not schedule meetings."),
    "not_presenter": ErrorCode((403,), "Only the chair or the named presenter may present."),
    "not_sender": ErrorCode((403,), "Only the sending side sees the receipts."),
    "not_shared_in_meeting": ErrorCode((422,), "This document is on no agenda of your meetings."),
    "not_standing": ErrorCode((403,), "Only the Standing Committee issues instructions."),
    "not_your_receipt": ErrorCode((403,), "You can only acknowledge for yourself."),
    "not_your_thread": ErrorCode((403,), "You may only use your own unit's thread."),
    "note_too_large": ErrorCode((413,), "The note is too long."),
    "oidc_account_disabled": ErrorCode((403,), "The SSO account matches a disabled account here."),
    "oidc_code_invalid": ErrorCode((401,), "The SSO sign-in code is unknown, used or expired."),
    "oidc_denied": ErrorCode((401,), "The OpenID provider refused or cancelled the sign-in."),
    "oidc_id_token_invalid": ErrorCode((401,), "The OpenID provider's ID token was refused."),
    "oidc_no_account": ErrorCode(
        (403,), "No account here has the SSO username; nothing was created."
    ),
    "oidc_not_configured": ErrorCode((404,), "Single sign-on is not configured."),
    "oidc_provider_error": ErrorCode(
        (502,), "The OpenID provider could not be reached or did not answer as expected."
    ),
    "oidc_state_invalid": ErrorCode((400,), "The SSO sign-in is unknown, expired or already used."),
    "page_not_found": ErrorCode((404,), "This page does not exist."),
    "page_out_of_range": ErrorCode((422,), "The document has no such page."),
    "participant_not_found": ErrorCode((404,), "That person does not take part in the meeting."),
    "pin_locked": ErrorCode((409,), "The signing token is locked after too many wrong PINs."),
    "pin_required": ErrorCode((400,), "Give the PIN of your signing token."),
    "poll_already_open": ErrorCode((409,), "The vote is already open."),
    "poll_closed": ErrorCode((409,), "The vote is over."),
    "poll_not_closed": ErrorCode((409,), "Receipts are checked only after the poll has closed."),
    "poll_not_found": ErrorCode((404,), "This vote does not exist."),
    "poll_not_open": ErrorCode((409,), "The vote has not been opened yet."),
    "query_too_long": ErrorCode((400,), "The search text is too long."),
    "queue_full": ErrorCode((409,), "The list of speakers is full."),
    "queue_mismatch": ErrorCode((422,), "List every waiting request exactly once."),
    "rate_limited": ErrorCode((429,), "Too many requests; try again shortly."),
    "reason_not_allowed": ErrorCode(
        (422,), "Only the chair or a secretary records a reason for absence."
    ),
    "recording_in_progress": ErrorCode((409,), "The recording is still in progress."),
    "recording_not_found": ErrorCode((404,), "This recording does not exist."),
    "render_failed": ErrorCode((422,), "The page could not be displayed."),
    "result_not_sealed": ErrorCode((404,), "The result sheet of this poll is not sealed yet."),
    "revocation_unavailable": ErrorCode(
        (502,), "The revocation status of the certificate could not be checked."
    ),
    "root_exists": ErrorCode((422,), "The organisation already has a top unit; choose a parent."),
    "self_lockout": ErrorCode((422,), "An administrator cannot disable or demote themselves."),
    "shutting_down": ErrorCode((503,), "The server is restarting; try again in a moment."),
    "signal_refused": ErrorCode((), "The live connection refused this signal."),
    "signature_conflict": ErrorCode((409,), "This document waits for another signature first."),
    "signing_key_missing": ErrorCode((422,), "The signing token holds no key for this signer."),
    "signing_not_configured": ErrorCode((409,), "Digital signing is not set up on this server."),
    "speaker_not_found": ErrorCode((404,), "This request to speak does not exist."),
    "speaker_not_speaking": ErrorCode((409,), "This person is not speaking."),
    "speaker_not_waiting": ErrorCode((409,), "This request is no longer waiting."),
    "stamp_failed": ErrorCode((422,), "The document copy could not be prepared."),
    "stroke_too_long": ErrorCode((422,), "The stroke is too long; draw it in parts."),
    "timestamp_unavailable": ErrorCode(
        (502,), "The timestamp service did not answer; nothing was signed."
    ),
    "token_absent": ErrorCode((409,), "The signing token is not present."),
    "token_expired": ErrorCode((401,), "Your session has expired; please sign in again."),
    "token_revoked": ErrorCode((401,), "The session was ended; sign in again."),
    "too_large": ErrorCode((413,), "Too large."),
    "too_many_annotations": ErrorCode((422,), "You have too many annotations on this document."),
    "too_many_documents": ErrorCode((422,), "The agenda item has too many documents."),
    "too_many_members": ErrorCode((422,), "The conversation has too many members."),
    "too_many_participants": ErrorCode((422,), "The meeting has too many participants."),
    "too_many_topics": ErrorCode((), "Too many subscriptions at once."),
    "too_many_users": ErrorCode((422,), "Too many people asked for at once."),
    "unauthorized": ErrorCode((401,), "Please sign in."),
    "unit_cycle": ErrorCode((422,), "A unit cannot be moved below itself."),
    "unit_not_found": ErrorCode((404,), "This unit does not exist."),
    "unit_required": ErrorCode((422,), "Choose which unit's thread to answer in."),
    "unknown_attachment": ErrorCode((422,), "An attached file cannot be used here."),
    "unknown_reply_to": ErrorCode((422,), "The message you answer no longer exists."),
    "unknown_thread": ErrorCode((422,), "That unit did not receive this instruction."),
    "unknown_units": ErrorCode((422,), "Some of the chosen units do not exist."),
    "unmute_by_owner": ErrorCode((422,), "Only the participant unmutes; ask them to."),
    "unknown_user": ErrorCode((422,), "That person does not exist or is disabled."),
    "unknown_users": ErrorCode((422,), "Some of the chosen people do not exist."),
    "unprocessable": ErrorCode((422,), "The request breaks a rule."),
    "unsupported_type": ErrorCode((422,), "This kind of file is not accepted."),
    "user_not_found": ErrorCode((404,), "This user does not exist."),
    "username_taken": ErrorCode((409,), "This username is taken."),
    "weak_password": ErrorCode(
        (422,),
        "The password is refused: too short or too long, one "
        "or two characters repeated, the username, too common, or "
        "unchanged; details.reason says which.",
    ),
    "wrong_password": ErrorCode((422,), "The current password is wrong."),
    "wrong_pin": ErrorCode((422,), "The PIN is wrong; nothing was signed."),
}
