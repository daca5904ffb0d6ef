"""Ballots of an open secret poll are sealed on disk until the close.

Why: a database writes in commits, and its write-ahead log (SQLite's ``-wal`` file,
PostgreSQL's WAL) keeps them in order. A roll entry and its ballot written in one commit
can be paired by replaying the log commit by commit, whatever the tables look like. So
while a secret poll is open the box holds no readable ballot: each is stored as a *slot*
(a keyed hash of its receipt, so a retry and a reused key are still recognised) and a
*seal* (the receipt and the choice, encrypted with AES-GCM and padded to one length per
poll, so its size says nothing). The key of a poll is derived from the node's signing key
(the same on every node), never stored in the database. The close unseals the box and
writes the plain ballots, sorted, in the closing transaction; after it the seals are
deleted (``secure_delete`` zeroes them on SQLite) and the log is checkpointed.

Someone holding a copy of the database and its log sees which slot came in with which
roll entry, but cannot tell which receipt or choice a slot holds without the node's key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from meeting.polls.models import RECEIPT_CHARS
from meeting.polls.rules import PollKind
from server.auth.tokens import load_or_create_signing_key
from server.settings import Settings

SEAL_DOMAIN = b"dienhong/poll-seal/v1"
NONCE_BYTES = 12
# Every seal of a poll has the same plaintext length, rounded up to this many bytes.
PAD_TO = 64
# The words of a yes/no/abstain poll (their longest is the bound of its seals).
YES_NO_ABSTAIN = ("yes", "no", "abstain")


class SealError(RuntimeError):
    """A seal that does not open with this node's key (another key, or changed bytes)."""


class BallotSeal:
    """Seals and slots of secret ballots under keys derived from one node secret."""

    def __init__(self, secret: bytes) -> None:
        self._master = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=SEAL_DOMAIN
        ).derive(secret)

    @classmethod
    def for_settings(cls, settings: Settings) -> BallotSeal:
        """The node's seal, from its token signing key (the same on every node)."""
        key = load_or_create_signing_key(settings)
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return cls(raw)

    def _poll_key(self, poll_id: int) -> bytes:
        return hmac.new(self._master, f"poll:{poll_id}".encode(), hashlib.sha256).digest()

    def slot(self, poll_id: int, receipt: str) -> str:
        """Where the sealed ballot of this receipt lies: a keyed hash, unlinkable without
        the key, so a retry or a reused key finds it."""
        return hmac.new(
            self._poll_key(poll_id), f"slot:{receipt}".encode(), hashlib.sha256
        ).hexdigest()

    def seal(self, poll_id: int, bound: int, receipt: str, choice: Sequence[str]) -> bytes:
        plain = json.dumps([receipt, list(choice)], ensure_ascii=False).encode()
        if len(plain) > bound:
            raise ValueError("a ballot longer than its poll allows")
        padded = plain + b" " * (bound - len(plain))
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self._poll_key(poll_id)).encrypt(nonce, padded, str(poll_id).encode())
        return nonce + sealed

    def unseal(self, poll_id: int, sealed: bytes) -> tuple[str, list[str]]:
        try:
            plain = AESGCM(self._poll_key(poll_id)).decrypt(
                sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], str(poll_id).encode()
            )
        except Exception as exc:
            raise SealError(f"a sealed ballot of poll {poll_id} does not open") from exc
        receipt, choice = json.loads(plain)
        return str(receipt), [str(c) for c in choice]


def seal_bound(kind: PollKind, options: Sequence[str]) -> int:
    """The plaintext length of every seal of a poll: room for the longest ballot it can
    take (all options chosen), rounded up, so a seal's size never tells a choice."""
    words = list(options) if kind is PollKind.CHOICE else [max(YES_NO_ABSTAIN, key=len)]
    longest = len(json.dumps(["0" * RECEIPT_CHARS, words], ensure_ascii=False).encode())
    return -(-longest // PAD_TO) * PAD_TO
