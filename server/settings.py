"""One typed Settings object, read once at start-up from ``DIENHONG_*`` variables.

Every limit the server enforces (sizes, rates, counts, intervals) lives here with a sane
default, so an operator can tune it without touching code. ``Settings.from_env()`` is the
only place that reads the environment; everything else receives a ``Settings``.
"""

from __future__ import annotations

import dataclasses
import os
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

ENV_PREFIX = "DIENHONG_"


class SettingsError(ValueError):
    """A ``DIENHONG_*`` variable could not be read as the type its setting needs."""


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {raw!r}")


def _parse_tuple(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _parse_int_map(raw: str) -> dict[str, int]:
    """``express=300,urgent=3600`` -> ``{"express": 300, "urgent": 3600}``."""
    result: dict[str, int] = {}
    for part in _parse_tuple(raw):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"expected key=value, got {part!r}")
        result[key.strip()] = int(value)
    return result


@dataclass(frozen=True)
class Settings:
    # --- storage -------------------------------------------------------------
    data_dir: Path = Path("./dienhong-data")
    # Empty means SQLite at <data_dir>/dienhong.sqlite3 (the embedded default).
    database_url: str = ""
    # Empty means the in-process broker (one node). redis://… for several nodes.
    redis_url: str = ""
    # Redis channel that carries committed events between nodes.
    redis_channel: str = "dienhong:events"
    db_pool_size: int = 10
    # How long a SQLite writer waits for the write lock before failing.
    sqlite_busy_timeout_ms: int = 10_000

    # --- HTTP -----------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    # Origins allowed to open /ws from a browser. Empty: only same-origin pages.
    allowed_origins: tuple[str, ...] = ()
    max_json_body_bytes: int = 1_048_576
    # Deepest nesting of objects and arrays a JSON body may have (no route needs more than 4).
    max_json_depth: int = 32
    # Who may read /metrics: client addresses or networks (after a trusted proxy's
    # X-Forwarded-For), or anyone sending "Authorization: Bearer <metrics_token>".
    metrics_allowed_addresses: tuple[str, ...] = ("127.0.0.1", "::1")
    metrics_token: str = ""

    # --- audit anchoring ------------------------------------------------------------
    # How often the node signs a checkpoint of the audit chain's head (0: never).
    audit_checkpoint_interval_secs: float = 300.0
    # The append-only file of checkpoints; empty: audit-checkpoints.jsonl in data_dir.
    audit_checkpoint_path: str = ""

    # --- tokens ---------------------------------------------------------------
    jwt_issuer: str = "dienhong"
    jwt_audience: str = "dienhong"
    # PEM of the Ed25519 signing key; empty: generated once under data_dir/keys.
    jwt_private_key: str = ""
    access_token_ttl_secs: int = 8 * 3600
    # External SSO issuer. Enabled when sso_issuer and a key source are set.
    sso_issuer: str = ""
    sso_audience: str = ""
    sso_jwks_url: str = ""
    sso_public_key: str = ""
    sso_algorithms: tuple[str, ...] = ("RS256",)
    sso_username_claim: str = "preferred_username"

    # Verified access tokens of this server remembered per node (a repeat skips the
    # signature check; expiry is still checked on every request). 0 turns it off.
    token_cache_size: int = 10_000
    # A node uses an authenticated user's roles, unit and active flag for at most this
    # long before reading them again (changes made on the node, or announced by the
    # broker, apply at once; this bounds a node that missed the announcement). 0: off.
    principal_cache_secs: float = 30.0
    principal_cache_size: int = 10_000

    # --- login protection -----------------------------------------------------
    login_max_failures: int = 5
    login_lockout_secs: int = 15 * 60

    # --- real time ------------------------------------------------------------
    # Frames a slow socket may have waiting before it is cut off with 4408.
    ws_send_queue_frames: int = 2_000
    ws_max_frame_bytes: int = 65_536
    # Client frames per user per second (token bucket refill) and burst size.
    ws_rate_per_sec: float = 20.0
    ws_rate_burst: int = 60
    ws_auth_timeout_secs: float = 10.0
    # Protocol-level pings keep NAT mappings open and detect dead tablets.
    ws_ping_interval_secs: float = 20.0
    ws_ping_timeout_secs: float = 20.0
    # permessage-deflate keeps a zlib context per socket (~50 KiB each) and compresses every
    # frame once per socket; off by default, on for thin links where bytes cost more.
    ws_per_message_deflate: bool = False
    # Events older than this are pruned from the log; resuming before them gives reset.
    event_retention_secs: int = 30 * 24 * 3600
    # How often each node compares its topics with the log, to recover dropped messages.
    log_sweep_interval_secs: float = 2.0
    # Events sent per query when a socket resumes.
    resume_batch: int = 500
    # Messages (events of a write, signals) waiting to go to Redis before the oldest is
    # dropped (other nodes recover dropped events from the log), and the deadline of one
    # round trip to Redis from the fast path (publishing, the subscription's liveness,
    # presence): a Redis that stops answering never holds up a request or a socket longer.
    broker_queue_messages: int = 10_000
    broker_timeout_secs: float = 2.0
    # The cyclic garbage collector: container objects allocated between young passes, and
    # middle passes before a full pass is considered (Python's defaults: 700 and 10). A
    # full pass walks every socket's objects (about 140 each: 0.8 s at 8,000 sockets), and
    # with the defaults a storm of reconnecting tablets set off one after every few hundred.
    gc_young_objects: int = 7000
    gc_full_after: int = 100

    # --- files ----------------------------------------------------------------
    max_upload_bytes: int = 50 * 1024 * 1024
    # Checking an uploaded PDF (pypdf, in a worker process) may take this long.
    pdf_worker_timeout_secs: float = 20.0
    # Address-space limit of each PDF worker process (RLIMIT_AS).
    pdf_worker_memory_mb: int = 512
    render_ahead_pages: int = 8
    # Rendered pages kept on disk at most (0: no limit); the least recently used go first.
    render_cache_max_bytes: int = 2 * 1024 * 1024 * 1024
    # How often the render cache is checked against its limit.
    render_cache_trim_interval_secs: float = 600.0
    # A page used this recently is never trimmed, whatever the limit.
    render_cache_keep_secs: float = 600.0
    render_default_width: int = 1024
    render_max_width: int = 2400
    # Widths a WebP page image is rendered at: an asked width is rounded up to the next
    # step (the largest at most), so tablets of one model share cached renders.
    render_width_steps: tuple[str, ...] = ("640", "800", "1024", "1280", "1600", "1920",
                                           "2400")
    # Quality (0-100) of lossy WebP page images: scans and photographs (text pages are
    # encoded losslessly, which is smaller for them).
    render_webp_quality: int = 80
    # When a reverse proxy that honours X-Accel-Redirect is in front (nginx), the URL
    # prefix of its internal location for the data directory's renders/ (e.g.
    # "/_dienhong_renders/"); empty: the server sends page images itself.
    accel_redirect_prefix: str = ""
    # Text answers (HTML, CSS, JS, JSON) this size and up are compressed (brotli or gzip);
    # 0 turns compression off (a proxy in front that compresses itself).
    compress_min_bytes: int = 1024
    # Memory for the most recently asked page images of this node (0: none); a burst of
    # tablets on the presented page is then answered from memory.
    render_memory_cache_bytes: int = 64 * 1024 * 1024
    # Worker processes that check uploads / render pages / stamp readers' copies.
    pdf_parse_workers: int = 1
    pdf_render_workers: int = 2
    pdf_stamp_workers: int = 2
    # A worker is replaced after this many jobs, so leaks in the PDF libraries stay bounded.
    pdf_worker_max_jobs: int = 500
    # Jobs waiting for a worker before new ones are refused with 429.
    pdf_queue_limit: int = 256
    pdf_render_timeout_secs: float = 30.0
    pdf_stamp_timeout_secs: float = 120.0
    # Bigger documents are refused at upload (422 invalid_pdf).
    pdf_max_pages: int = 5_000
    # An embedded image may declare at most this many pixels (decompression bombs).
    pdf_max_image_pixels: int = 100_000_000
    # Pixels of one rendered page at most, whatever its shape.
    render_max_pixels: int = 16_000_000
    # Text kept per file for search.
    max_extracted_text_chars: int = 1_000_000

    # --- messaging ------------------------------------------------------------
    max_message_bytes: int = 16_384
    max_directive_body_bytes: int = 200_000
    # Seconds between reminders per urgency, for recipients who have not acknowledged.
    reminder_intervals: Mapping[str, int] = field(
        default_factory=lambda: {
            "express": 5 * 60,
            "very_urgent": 15 * 60,
            "urgent": 60 * 60,
            "normal": 24 * 3600,
        }
    )
    # After this many reminders the head of the late unit is told too.
    escalate_after_reminders: int = 3
    # Shortest gap between two coalesced progress events (receipts, poll progress).
    coalesce_interval_secs: float = 0.25
    # directive.issued events carry at most this many characters of the body; clients
    # fetch longer bodies over REST (3,200 copies of a long body would bloat the log).
    directive_event_body_chars: int = 2_000
    # Longest a reminder scheduler sleeps before looking for work other nodes scheduled.
    reminder_poll_secs: float = 15.0
    # Reminders (or overdue directives) claimed per write transaction.
    reminder_batch: int = 500
    # Members of a group channel, creator included.
    max_channel_members: int = 500
    # Reads/acknowledgements applied per group-commit transaction, and how many may wait
    # for one before new ones are refused with 429.
    receipt_batch: int = 500
    receipt_queue_limit: int = 20_000
    # A node's presence entries in Redis expire unless refreshed (a dead node's users go
    # offline by themselves).
    presence_ttl_secs: int = 60
    # The city's time zone (IANA name): receipts.csv writes times in it, for people.
    city_timezone: str = "Asia/Ho_Chi_Minh"

    # --- meetings and media ---------------------------------------------------
    default_speech_limit_secs: int = 300
    # Meetings: people in one meeting, agenda size and depth, documents per item.
    meeting_max_participants: int = 1_000
    meeting_max_agenda_items: int = 300
    meeting_agenda_max_depth: int = 3
    meeting_max_documents_per_item: int = 20
    # Waiting requests for the floor in one meeting (each delegate has at most one per kind).
    meeting_max_waiting_speakers: int = 1_000
    # "Time is nearly up" goes out this many seconds before a speech's limit.
    speech_warning_secs: int = 30
    # How often a node looks for speeches granted elsewhere to time them too.
    speech_timer_rescan_secs: float = 5.0
    # Annotations: the data one reader keeps on one document, all annotations together
    # (bounds the work of writing their annotated.pdf), and the size of one annotation.
    annotation_max_bytes: int = 1_048_576
    annotation_max_data_bytes: int = 65_536
    # Points one ink stroke may have (a tablet samples a long stroke at a few hundred).
    annotation_max_points_per_stroke: int = 2_000
    annotation_max_per_file: int = 2_000
    # Remote (WebRTC) participants of one meeting on one node at most.
    media_max_participants: int = 200
    # STUN/TURN URLs (turn:user:password@host:port); none on a LAN.
    media_ice_servers: tuple[str, ...] = ()
    # Host candidate addresses the server offers (the hall's LAN address); empty: all.
    media_addresses: tuple[str, ...] = ()
    # Networks (CIDR) remote peers may be reached at; empty: anywhere. A LAN-only hall
    # sets its LAN; tests set 127.0.0.0/8, so no packet ever goes to another address.
    media_peer_networks: tuple[str, ...] = ()
    # A peer whose audio stops for this long is dropped with media.left.
    media_silence_timeout_secs: float = 15.0
    # How often the floor of every meeting with remote participants is re-read.
    media_floor_poll_secs: float = 0.25
    # Record the floor of every sitting with remote participants (Ogg/Opus, data_dir).
    media_record: bool = True

    # --- polls ----------------------------------------------------------------
    # Options of a choice poll (candidates of an election) at most.
    poll_max_options: int = 100
    # Longest duration after which a poll closes itself (one day).
    poll_max_duration_secs: int = 24 * 3600
    # The closer looks at the database at least this often, to catch polls opened on
    # another node (whose wake-up it never hears) or left open by a node that stopped.
    poll_closer_recheck_secs: float = 30.0
    # Ballots written per transaction at most (group commit: one transaction and one
    # audit-chain lock for all the ballots that arrived while the previous batch was written).
    poll_ballot_batch: int = 250
    # Ballots waiting to be written on one node before new ones get 429 (bounded queue).
    poll_ballot_queue: int = 5_000
    # The minutes print times in this offset from UTC (Vietnam: UTC+7, no summer time).
    minutes_utc_offset_mins: int = 7 * 60

    # --- operations -----------------------------------------------------------
    log_level: str = "INFO"
    log_json: bool = True
    # Serve the OpenAPI-free static web client from this process.
    serve_web_client: bool = True

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'dienhong.sqlite3').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def sso_enabled(self) -> bool:
        return bool(self.sso_issuer and (self.sso_jwks_url or self.sso_public_key))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every ``DIENHONG_<FIELD>`` variable; unknown or malformed ones are errors."""
        env = os.environ if environ is None else environ
        hints = get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in env.items():
            if not key.startswith(ENV_PREFIX):
                continue
            name = key[len(ENV_PREFIX) :].lower()
            if name not in names:
                # Variables of the test harness and the CLI share the prefix.
                continue
            try:
                values[name] = _convert(hints[name], raw)
            except (TypeError, ValueError) as exc:
                raise SettingsError(f"{key}: {exc}") from exc
        values.update(overrides)
        return cls(**values)

    def with_overrides(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _convert(hint: Any, raw: str) -> Any:
    origin = get_origin(hint)
    if hint is bool:
        return _parse_bool(raw)
    if hint is int:
        return int(raw)
    if hint is float:
        return float(raw)
    if hint is Path:
        return Path(raw)
    if hint is str:
        return raw
    if origin is tuple:
        return _parse_tuple(raw)
    if origin in (Mapping, dict) and get_args(hint)[1] is int:
        return _parse_int_map(raw)
    if isinstance(hint, types.UnionType):
        return raw
    raise TypeError(f"unsupported setting type {hint!r}")


def setting_names() -> list[str]:
    """Every environment variable the server reads, for documentation and checks."""
    return [ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)]
