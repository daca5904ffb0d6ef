"""Access tokens: our own (Ed25519, pinned ``EdDSA``) and an external SSO issuer's.

Every token must carry ``iss``, ``aud``, ``exp`` and ``sub``. The algorithm is never taken
from the token: ours must be EdDSA, the SSO issuer's must be one of its configured
algorithms, so ``alg: none`` and HMAC-with-a-public-key confusion are refused.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fcntl
import json
import os
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeGuard

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from server.errors import Unauthorized
from server.settings import Settings

ALGORITHM = "EdDSA"
# The node key under the data directory: it signs tokens and the audit checkpoints, and
# the seals of a secret poll's ballots derive from it.
SIGNING_KEY_PART = "keys/jwt-ed25519.pem"
# The public halves of the keys it replaced (``dienhong rotate-key``), one PEM file each:
# what they signed (the audit checkpoints) can still be checked.
RETIRED_KEYS_PART = "keys/retired"
# A serving node holds this file locked (shared); ``rotate-key`` locks it exclusively, so
# it never replaces the key under a running node of the data directory.
KEY_LOCK_PART = "keys/in-use.lock"
REQUIRED_CLAIMS = ["iss", "aud", "exp", "sub"]
# Tolerated clock difference between the SSO issuer and this server.
LEEWAY_SECS = 30
HMAC_ALGORITHMS = {"HS256", "HS384", "HS512"}
# Time claims are checked here against the injected clock (PyJWT would use the machine's).
_DECODE_OPTIONS: Any = {
    "require": REQUIRED_CLAIMS,
    "verify_exp": False,
    "verify_iat": False,
    "verify_nbf": False,
}
# Our own tokens may be checked by a node whose clock is slightly behind the issuer's.
MAX_CLOCK_SKEW_SECS = 5
# Three base64url segments (no padding, nothing else): the shape of a token we issue.
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
ED25519_SIGNATURE_BYTES = 64
# The refusal PyJWT gives a token whose signature does not verify.
_BAD_SIGNATURE = "Signature verification failed"


def _private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _written_aside(path: Path, data: bytes) -> Path:
    """``data`` in a new file (0600) beside ``path``, on disk; the caller moves it there."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return tmp


def _b64url(segment: str) -> bytes:
    """A base64url segment already checked against ``_COMPACT``."""
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def load_or_create_signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The configured PEM key, else one generated once under ``data_dir/keys``."""
    if settings.jwt_private_key:
        key = serialization.load_pem_private_key(settings.jwt_private_key.encode(), None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("DIENHONG_JWT_PRIVATE_KEY must be an Ed25519 private key (PEM)")
        return key
    path = Path(settings.data_dir) / SIGNING_KEY_PART
    if path.exists():
        loaded = serialization.load_pem_private_key(path.read_bytes(), None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return loaded
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    tmp = _written_aside(path, _private_pem(key))
    try:
        # link() refuses to replace: of nodes starting together on one data dir, the
        # first key written wins and every node signs with it.
        os.link(tmp, path)
    except FileExistsError:
        return load_or_create_signing_key(settings)
    finally:
        tmp.unlink()
    return key


class KeyRotationError(Exception):
    """The node key cannot be rotated here; the message says why and what to do."""


def _key_lock(settings: Settings) -> int:
    path = Path(settings.data_dir) / KEY_LOCK_PART
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


@contextlib.contextmanager
def node_key_in_use(settings: Settings, loaded: Ed25519PublicKey) -> Iterator[None]:
    """Held while a node serves with the key it ``loaded``: the key is not rotated
    meanwhile. A key rotated after the node loaded it, before this, fails the start."""
    if settings.jwt_private_key:
        yield  # the operator's key, which rotate-key leaves alone
        return
    fd = _key_lock(settings)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        if load_or_create_signing_key(settings).public_key() != loaded:
            raise RuntimeError("the node key was rotated while this node started: start it again")
        yield
    finally:
        os.close(fd)


def retired_public_keys(settings: Settings) -> list[Ed25519PublicKey]:
    """The public halves of the keys the node key replaced (``keys/retired``)."""
    folder = Path(settings.data_dir) / RETIRED_KEYS_PART
    keys: list[Ed25519PublicKey] = []
    for path in sorted(folder.glob("*.pem")) if folder.is_dir() else []:
        loaded = serialization.load_pem_public_key(path.read_bytes())
        if not isinstance(loaded, Ed25519PublicKey):
            raise ValueError(f"{path} is not an Ed25519 public key")
        keys.append(loaded)
    return keys


def rotate_signing_key(settings: Settings) -> tuple[Ed25519PublicKey, Ed25519PublicKey]:
    """Put a new node key in place of the data directory's, the old one's public half kept
    in ``keys/retired`` (named by its key id); the old and the new public key. Nodes read
    the key when they start: every node must be restarted after (``dienhong rotate-key``)."""
    if settings.jwt_private_key:
        raise KeyRotationError(
            "the key comes from DIENHONG_JWT_PRIVATE_KEY: give every node a new Ed25519 "
            f"key there, and put the old key's public half (PEM) in {RETIRED_KEYS_PART}/ "
            "of the data directory so that verify-audit still checks what it signed"
        )
    path = Path(settings.data_dir) / SIGNING_KEY_PART
    if not path.is_file():
        raise KeyRotationError(f"no key at {path}: nothing to rotate (a node makes one)")
    fd = _key_lock(settings)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KeyRotationError(
                "a node is serving with this data directory: stop every node first (one "
                "still running would go on signing with the old key, and sealing the "
                "ballots of a secret poll with it)"
            ) from None
        return _replace_key(settings, path)
    finally:
        os.close(fd)


def _replace_key(settings: Settings, path: Path) -> tuple[Ed25519PublicKey, Ed25519PublicKey]:
    from server.audit_anchor import ed25519_key_id

    old = load_or_create_signing_key(settings).public_key()
    name = ed25519_key_id(old).replace(":", "-")
    retired = Path(settings.data_dir) / RETIRED_KEYS_PART
    retired.mkdir(mode=0o700, parents=True, exist_ok=True)
    public_pem = old.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    os.replace(_written_aside(retired / f"{name}.pem", public_pem), retired / f"{name}.pem")
    new = Ed25519PrivateKey.generate()
    os.replace(_written_aside(path, _private_pem(new)), path)
    return old, new.public_key()


class SignatureChecks:
    """Ed25519 signatures checked on a thread of their own, as many per hop as are waiting.

    A signature check is the largest part of signing in a socket (about 0.15 ms), and the
    cryptography library lets go of the interpreter while it checks: on its own thread it
    runs beside the event loop instead of in it. When thousands of sockets reconnect at
    once, the thread takes every signature queued meanwhile and answers them with one
    wake-up of the loop, so the hop costs the loop less than the check it saves.
    """

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key
        self._lock = threading.Lock()
        self._queued: list[tuple[bytes, bytes, asyncio.Future[bool]]] = []
        self._running = False
        self._executor: ThreadPoolExecutor | None = None

    def check(self, signature: bytes, signed: bytes) -> asyncio.Future[bool]:
        """Does ``signature`` sign ``signed``? The answer comes on the running loop."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bool] = loop.create_future()
        with self._lock:
            self._queued.append((signature, signed, answer))
            if self._running:
                return answer
            self._running = True
        # Handed over at the end of this loop turn, with every check asked for in it: they
        # come back together, and what follows (reading the tokens' users) stays batched.
        loop.call_soon(self._hand_over)
        return answer

    def _hand_over(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="token-signatures")
        self._executor.submit(self._drain)

    def _drain(self) -> None:
        while True:
            with self._lock:
                batch, self._queued = self._queued, []
                if not batch:
                    self._running = False
                    return
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[bool], bool]]]
            by_loop = {}
            for signature, signed, answer in batch:
                try:
                    self._key.verify(signature, signed)
                    valid = True
                except Exception:  # InvalidSignature; anything else fails closed too
                    valid = False
                by_loop.setdefault(answer.get_loop(), []).append((answer, valid))
            for loop, answers in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_settle, answers)
                except RuntimeError:
                    pass  # that loop has closed: nobody waits for these answers


def _settle(answers: list[tuple[asyncio.Future[bool], bool]]) -> None:
    for answer, valid in answers:
        if not answer.done():
            answer.set_result(valid)


@dataclass(frozen=True)
class VerifiedToken:
    """Who a valid token names: our user id, or the SSO issuer's username."""

    user_id: int | None
    username: str | None
    claims: dict[str, Any]


class TokenService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._key = load_or_create_signing_key(settings)
        self.public_key = self._key.public_key()
        self._signatures = SignatureChecks(self.public_key)
        self._jwks: jwt.PyJWKClient | None = None
        # Our own tokens whose signature and claims checked out, by their text: a tablet
        # sends the same token with every request. Only the times are checked again.
        self._verified: dict[str, VerifiedToken] = {}
        # The header segment of every token we issue (alg EdDSA, typ JWT): a token that
        # starts with exactly it is checked without PyJWT's general machinery.
        self._header = jwt.encode({}, self._key, algorithm=ALGORITHM).partition(".")[0]
        if settings.sso_enabled and settings.sso_jwks_url:
            self._jwks = jwt.PyJWKClient(settings.sso_jwks_url, cache_keys=True, lifespan=300)
        bad = HMAC_ALGORITHMS.intersection(settings.sso_algorithms) | (
            {"none"} & {a.lower() for a in settings.sso_algorithms}
        )
        if settings.sso_enabled and bad:
            raise ValueError(f"SSO algorithms must be asymmetric, not {sorted(bad)}")

    def issue(
        self, user_id: int, now: datetime, *, ttl: int | None = None, **extra: Any
    ) -> tuple[str, int]:
        """A token of ``ttl`` seconds (at most, and by default, the configured lifetime)."""
        ttl = (
            min(ttl, self.settings.access_token_ttl_secs)
            if ttl is not None
            else (self.settings.access_token_ttl_secs)
        )
        claims = {
            "iss": self.settings.jwt_issuer,
            "aud": self.settings.jwt_audience,
            "sub": str(user_id),
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=ttl)).timestamp()),
            **extra,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), ttl

    async def verify(self, token: str, now: datetime) -> VerifiedToken:
        """Check signature, algorithm and claims; raise ``Unauthorized`` otherwise."""
        known = self._verified.get(token)
        if known is not None:
            try:
                self._check_times(known.claims, now, leeway=0)
            except Unauthorized:
                del self._verified[token]
                raise
            return known
        if self.settings.sso_enabled:
            # Whose token it is decides the key. Without SSO there is only ours, and the
            # token is decoded once (after a restart every socket's token is new here).
            try:
                unverified = jwt.decode(token, options={"verify_signature": False})
            except jwt.PyJWTError as exc:
                raise Unauthorized("The token is malformed.", code="invalid_token") from exc
            if unverified.get("iss") == self.settings.sso_issuer:
                return await self._verify_sso(token, now)
        try:
            claims = await self._decode_ours(token) or jwt.decode(
                token,
                self.public_key,
                algorithms=[ALGORITHM],
                audience=self.settings.jwt_audience,
                issuer=self.settings.jwt_issuer,
                options=_DECODE_OPTIONS,
            )
        except jwt.InvalidSignatureError as exc:
            raise Unauthorized(f"The token was refused: {exc}.", code="invalid_token") from exc
        except jwt.DecodeError as exc:
            raise Unauthorized("The token is malformed.", code="invalid_token") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"The token was refused: {exc}.", code="invalid_token") from exc
        self._check_times(claims, now, leeway=0)
        try:
            user_id = int(claims["sub"])
        except (TypeError, ValueError) as exc:
            raise Unauthorized("The token's subject is not a user.", code="invalid_token") from exc
        verified = VerifiedToken(user_id=user_id, username=None, claims=claims)
        self._remember(token, verified)
        return verified

    async def _decode_ours(self, token: str) -> dict[str, Any] | None:
        """The claims of a token shaped exactly as we issue them, checked as PyJWT checks
        them (signature, then ``iss``, ``aud``, ``exp`` and ``sub`` present, ``iss`` and
        ``aud`` ours, ``sub`` and ``jti`` strings); None for anything else, which PyJWT
        then decides (and explains). A storm of reconnecting sockets each brings a token
        this node has not seen: PyJWT's general path costs as much as the signature.
        """
        if not _COMPACT.fullmatch(token):
            return None
        header, payload, signature = token.split(".")
        if header != self._header or len(payload) % 4 == 1 or len(signature) % 4 == 1:
            return None
        try:
            raw_signature = _b64url(signature)
            claims = json.loads(_b64url(payload))
        except (binascii.Error, ValueError, RecursionError):
            return None
        if len(raw_signature) != ED25519_SIGNATURE_BYTES:
            return None
        if not await self._signatures.check(raw_signature, f"{header}.{payload}".encode()):
            raise jwt.InvalidSignatureError(_BAD_SIGNATURE)
        settings = self.settings
        if (
            not isinstance(claims, dict)
            or any(claims.get(claim) is None for claim in REQUIRED_CLAIMS)
            or claims["iss"] != settings.jwt_issuer
            or claims["aud"] != settings.jwt_audience
            or not isinstance(claims["aud"], str)
            or not isinstance(claims["sub"], str)
            or not isinstance(claims.get("jti", ""), str)
        ):
            # Signed by us yet not as we issue them: PyJWT gives the reason.
            return None
        return claims

    @property
    def remembered(self) -> int:
        """How many verified tokens this service remembers (at most token_cache_size)."""
        return len(self._verified)

    def _remember(self, token: str, verified: VerifiedToken) -> None:
        limit = self.settings.token_cache_size
        if limit <= 0:
            return
        while len(self._verified) >= limit:
            # The token remembered longest ago goes first (expired ones among them).
            del self._verified[next(iter(self._verified))]
        self._verified[token] = verified

    async def _verify_sso(self, token: str, now: datetime) -> VerifiedToken:
        settings = self.settings
        try:
            if self._jwks is not None:
                signing = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
                key: Any = signing.key
            else:
                key = serialization.load_pem_public_key(settings.sso_public_key.encode())
            claims = jwt.decode(
                token,
                key,
                algorithms=list(settings.sso_algorithms),
                audience=settings.sso_audience or settings.jwt_audience,
                issuer=settings.sso_issuer,
                options=_DECODE_OPTIONS,
            )
        except (jwt.PyJWTError, ValueError) as exc:
            raise Unauthorized(f"The SSO token was refused: {exc}.", code="invalid_token") from exc
        self._check_times(claims, now, leeway=LEEWAY_SECS)
        username = claims.get(settings.sso_username_claim)
        if not isinstance(username, str) or not username:
            raise Unauthorized(
                f"The SSO token has no {settings.sso_username_claim!r} claim.",
                code="invalid_token",
            )
        return VerifiedToken(user_id=None, username=username, claims=claims)

    @staticmethod
    def _check_times(claims: dict[str, Any], now: datetime, *, leeway: int) -> None:
        # Every time claim is checked against the injected clock, not the machine's.
        stamp = now.timestamp()
        exp = claims.get("exp")
        if not _is_number(exp) or stamp > exp + leeway:
            raise Unauthorized("The token has expired.", code="token_expired")
        for claim in ("nbf", "iat"):
            value = claims.get(claim)
            if value is None:
                continue
            if not _is_number(value) or value > stamp + leeway + MAX_CLOCK_SKEW_SECS:
                raise Unauthorized(f"The token is not valid yet ({claim}).", code="invalid_token")


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
