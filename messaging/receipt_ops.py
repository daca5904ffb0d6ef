"""Reads and acknowledgements over ``/ws``: the client ops ``read`` and ``ack``.

A chat client that holds a socket marks instructions read and acknowledges them over it
instead of one HTTP request each: 3,200 clerks acknowledging within seconds cost 3,200
small frames on sockets that are already open, not 3,200 requests through routing,
headers and a token check. The request is the same ``ReceiptRequest`` the HTTP routes
make, judged and written by the node's ``ReceiptWriter`` (``messaging.receipts``): the same
refusals with the same codes, the same audit records, the same ``directive.receipts``
roll-up to the sender. The HTTP routes stay for clients without a socket.
"""

from __future__ import annotations

import asyncio
from typing import Any

from messaging.receipts import ack_request, offer_receipt, read_request
from server.auth.principal import Principal
from server.context import Context
from server.errors import BadRequest
from server.features import SocketOp
from server.http import MAX_ID
from server.realtime.contract import ClientOp

_RECEIPT = (
    "the recipient's receipt: {user_id, unit_id, state, delivered_at, read_at, "
    "acknowledged_at, note}, as POST /api/v1/directives/{directive_id}/ack answers"
)

READ_OP = ClientOp(
    "read",
    "Mark an instruction read (once; repeating changes nothing), as POST "
    "/api/v1/directives/{directive_id}/read does.",
    _RECEIPT,
    fields={"directive_id": "integer"},
)

ACK_OP = ClientOp(
    "ack",
    "Acknowledge an instruction, with an optional note (once; repeating changes nothing), "
    "as POST /api/v1/directives/{directive_id}/ack does.",
    _RECEIPT,
    fields={"directive_id": "integer"},
    optional={"note": "string|null"},
)


def _directive_id(message: dict[str, Any]) -> int:
    # The bound of an id in an HTTP path, so that both ways refuse the same ids alike.
    value: int = message["directive_id"]
    if not -MAX_ID - 1 <= value <= MAX_ID:
        raise BadRequest(f"directive_id must be a whole number up to {MAX_ID}.", code="invalid_id")
    return value


def read_op(
    ctx: Context, actor: Principal, message: dict[str, Any]
) -> asyncio.Future[dict[str, Any]]:
    """``{"op": "read", "directive_id", "ref"?}``: queued at once, answered when written."""
    return offer_receipt(ctx, read_request(actor, _directive_id(message)))


def ack_op(
    ctx: Context, actor: Principal, message: dict[str, Any]
) -> asyncio.Future[dict[str, Any]]:
    """``{"op": "ack", "directive_id", "note"?, "ref"?}``: queued at once, answered when
    written."""
    return offer_receipt(ctx, ack_request(actor, _directive_id(message), note=message.get("note")))


SOCKET_OPS = [SocketOp(READ_OP, read_op), SocketOp(ACK_OP, ack_op)]
