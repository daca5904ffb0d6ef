"""Password hashing with Argon2id, off the event loop (it is memory-hard on purpose)."""

from __future__ import annotations

import asyncio
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# OWASP's Argon2id baseline: 19 MiB, 2 passes, one lane.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256


COMMON_PASSWORDS_FILE = Path(__file__).with_name("common_passwords.txt")
# Letters people write as digits or signs; undone before looking a password up.
_UNLEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
)
_DECORATION = re.compile(r"^[\W\d_]+|[\W\d_]+$")


@dataclass(frozen=True)
class PasswordProblem:
    """Why a password is refused: a reason code the pages translate, with its figures, and
    the English sentence for the API's ``message``."""

    reason: str  # too_short | too_long | repeated | contains_username | common | unchanged
    message: str
    params: dict[str, Any] = field(default_factory=dict)

    def details(self) -> dict[str, Any]:
        return {"reason": self.reason, **self.params}


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list of passwords and stems too common to accept."""
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def password_problem(
    password: str, *, min_length: int, username: str = ""
) -> PasswordProblem | None:
    """Why ``password`` is too weak to accept, or None when it is acceptable.

    Too short, too long, one repeated character, the username, or a common password
    (also once digits and signs around it are removed and digit-for-letter swaps undone:
    "Matkhau@2024" is "matkhau").
    """
    if len(password) < min_length:
        return PasswordProblem(
            "too_short", f"A password needs at least {min_length} characters.", {"min": min_length}
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        return PasswordProblem(
            "too_long",
            f"A password has at most {MAX_PASSWORD_LENGTH} characters.",
            {"max": MAX_PASSWORD_LENGTH},
        )
    lowered = password.lower()
    if len(set(lowered)) <= 2:
        return PasswordProblem("repeated", "A password must not repeat one or two characters.")
    if username and username.lower() in lowered:
        return PasswordProblem("contains_username", "A password must not contain the username.")
    common = common_passwords()
    stem = _DECORATION.sub("", lowered)
    candidates = {
        lowered,
        stem,
        lowered.translate(_UNLEET),
        stem.translate(_UNLEET),
        _DECORATION.sub("", lowered.translate(_UNLEET)),
    }
    candidates |= {c.replace(" ", "").replace("-", "").replace("_", "") for c in candidates}
    if any(c in common for c in candidates) or not stem:
        return PasswordProblem(
            "common", "This password is too common; choose a longer, less usual one."
        )
    return None


def hash_password_sync(password: str) -> str:
    return _HASHER.hash(password)


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; a missing hash still costs one verification."""
    target = password_hash or _DUMMY_HASH
    try:
        ok = await asyncio.to_thread(_HASHER.verify, target, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return bool(ok) and password_hash is not None


# Verifying against this for unknown users keeps their timing like a real account's.
_DUMMY_HASH = _HASHER.hash("dienhong-no-such-user")
