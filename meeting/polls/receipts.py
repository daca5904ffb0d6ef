"""Receipts of ballots and the hashes derived from a ballot's idempotency key.

A receipt comes from the tablet's secret key, never from the voter (README, "Secret
ballots")."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from meeting.polls.models import (
    RECEIPT_CHARS,
)

# Domain separation for the two hashes derived from a ballot's idempotency key.
RECEIPT_DOMAIN = "dienhong/poll-receipt/v1"
RETRY_DOMAIN = "dienhong/poll-retry/v1"


def _digest(*parts: Any) -> str:
    encoded = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()


def receipt_for(poll_id: int, idempotency_key: str) -> str:
    """The receipt of a ballot: derived from the tablet's secret key, never from the voter."""
    return _digest(RECEIPT_DOMAIN, poll_id, idempotency_key)[:RECEIPT_CHARS]


def retry_check_for(poll_id: int, user_id: int, idempotency_key: str, choice: Sequence[str]) -> str:
    """What the roll keeps to recognise a retry of the very same ballot by the same voter."""
    return _digest(RETRY_DOMAIN, poll_id, user_id, idempotency_key, list(choice))


def ballots_digest(poll_id: int, ballots: Sequence[tuple[str, Sequence[str]]]) -> str:
    """sha256 over the published list of counted ballots (sorted by receipt)."""
    return _digest(
        "dienhong/poll-ballots/v1",
        poll_id,
        [[receipt, list(choice)] for receipt, choice in sorted(ballots)],
    )
