"""One typed Settings object, read once at start-up from ``DIENHONG_*`` variables.

Every limit the server enforces (sizes, rates, counts, intervals) lives here with a sane
default, so an operator can tune it without touching code. ``Settings.from_env()`` is the
only place that reads the environment; everything else receives a ``Settings``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

ENV_PREFIX = "DIENHONG_"
# Variables of the test harness share the prefix and are not settings.
TEST_PREFIX = "DIENHONG_TEST_"
# Variables with the prefix that other parts read, not ``Settings``: they are not unknown.
OTHER_VARIABLES = frozenset(
    {
        "DIENHONG_NEW_PASSWORD",  # dienhong create-user
    }
)


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
    # Where this node keeps the SQLite database, uploaded files, rendered pages and the signing
    # key.
    data_dir: Path = Path("./dienhong-data")
    # Empty means SQLite at <data_dir>/dienhong.sqlite3 (the embedded default).
    database_url: str = ""
    # Empty means the in-process broker (one node). redis://… for several nodes.
    redis_url: str = ""
    # Redis channel that carries committed events between nodes.
    redis_channel: str = "dienhong:events"
    # PostgreSQL connections per node (and as many again on overflow).
    db_pool_size: int = 10
    # PostgreSQL connections per node kept for reads alone (and as many again on overflow):
    # a read never waits for a connection held by a write queued behind the write lock.
    db_read_pool_size: int = 10
    # How long a SQLite writer waits for the write lock before failing.
    sqlite_busy_timeout_ms: int = 10_000
    # SQLite: how long a read's statement (of a GET, with reads first on) may run on the event
    # loop's own thread, skipping the trip to its connection's thread that it would wait for
    # under a storm of writes. One still running then is interrupted and runs again on that
    # thread. 0: every statement goes to the connection's thread.
    sqlite_read_on_loop_ms: float = 2.0

    # --- HTTP -----------------------------------------------------------------
    # Address `dienhong serve` listens on (`--host` overrides).
    host: str = "127.0.0.1"
    # Port `dienhong serve` listens on (`--port` overrides).
    port: int = 8000
    # Worker processes of `dienhong serve` (`--workers` overrides), all accepting on its one port;
    # each is a node of its own. Above 1 needs Redis (`DIENHONG_REDIS_URL`) between them; one per
    # core is the usual choice.
    workers: int = 1
    # Origins allowed to open /ws from a browser. Empty: only same-origin pages.
    allowed_origins: tuple[str, ...] = ()
    # Largest JSON request body; larger ones get 413.
    max_json_body_bytes: int = 1_048_576
    # Deepest nesting of objects and arrays in a JSON body; deeper ones get 400 `invalid_json`.
    max_json_depth: int = 32
    # Client addresses or networks (`10.0.0.0/8`) that may read `/metrics`; others get 404.
    # Empty: only with the token.
    metrics_allowed_addresses: tuple[str, ...] = ("127.0.0.1", "::1")
    # A secret that opens `/metrics` from anywhere as `Authorization: Bearer <token>`. Empty: no
    # token opens it.
    metrics_token: str = ""

    # --- audit anchoring ------------------------------------------------------------
    # How often the node signs a checkpoint of the audit chain's head (and once at shutdown); 0:
    # never.
    audit_checkpoint_interval_secs: float = 300.0
    # The append-only JSON-lines file of signed checkpoints; empty: `audit-checkpoints.jsonl` in
    # the data directory. Keep a copy off the machine.
    audit_checkpoint_path: str = ""

    # --- tokens ---------------------------------------------------------------
    # `iss` of the tokens this server issues and accepts.
    jwt_issuer: str = "dienhong"
    # `aud` of the tokens this server issues and accepts.
    jwt_audience: str = "dienhong"
    # PEM of the Ed25519 signing key; empty: generated once under data_dir/keys.
    jwt_private_key: str = ""
    # Lifetime of an access token.
    access_token_ttl_secs: int = 8 * 3600
    # External SSO issuer. Enabled when sso_issuer and a key source are set.
    sso_issuer: str = ""
    # `aud` required on SSO tokens (default: `DIENHONG_JWT_AUDIENCE`).
    sso_audience: str = ""
    # JWKS URL of the SSO issuer's signing keys.
    sso_jwks_url: str = ""
    # PEM public key of the SSO issuer (instead of a JWKS URL).
    sso_public_key: str = ""
    # Algorithms accepted on SSO tokens (asymmetric only; comma-separated).
    sso_algorithms: tuple[str, ...] = ("RS256",)
    # Claim of an SSO token that names the user (matched to `username`).
    sso_username_claim: str = "preferred_username"
    # OpenID Connect sign-in: the provider's issuer URL (discovery at
    # `<issuer>/.well-known/openid-configuration`); empty: no SSO button.
    oidc_issuer: str = ""
    # Client id of this server at the OpenID provider.
    oidc_client_id: str = ""
    # Client secret of this server at the OpenID provider (empty: a public client, PKCE only).
    oidc_client_secret: str = ""
    # Redirect URL registered at the provider: this server's `/api/v1/auth/oidc/callback`.
    oidc_redirect_url: str = ""
    # Scopes asked of the OpenID provider (comma-separated; must include `openid`).
    oidc_scopes: tuple[str, ...] = ("openid", "profile")
    # Claim of the provider's ID token that names the account (matched to `username`).
    oidc_username_claim: str = "preferred_username"
    # How long a sign-in started at the provider (and its one-time code) stays usable.
    oidc_pending_ttl_secs: int = 600
    # Most sign-ins started and not finished kept at once; beyond, the oldest are dropped.
    oidc_pending_max: int = 1000
    # How often the provider is asked whether the grants of SSO sessions are still active.
    oidc_check_interval_secs: int = 300

    # Verified access tokens of this server remembered per node: a repeat skips the signature
    # check (expiry is still checked on every request). `0` turns it off.
    token_cache_size: int = 10_000
    # How long a node uses an authenticated user's roles, unit, clearance and active flag before
    # reading them again. A change through `PATCH /api/v1/users/{id}` applies at once on the
    # node that made it and on every node the `user.updated` event reaches; this bounds a node
    # that missed the event (a broker outage): a disabled account is refused everywhere within
    # this time. `0` turns the cache off.
    principal_cache_secs: float = 30.0
    # Users kept in that cache per node at most (the one cached longest ago goes first).
    principal_cache_size: int = 10_000

    # --- login protection -----------------------------------------------------
    # Failed sign-ins of one username from one client address that cost no waiting.
    login_max_failures: int = 5
    # The longest wait a throttled (username, client address) is given.
    login_lockout_secs: int = 15 * 60
    # The first wait after the free failures; each further failure doubles it.
    login_delay_base_secs: float = 2.0
    # A throttle with no failure for this long is forgotten (the rows are deleted).
    login_throttle_forget_secs: int = 24 * 3600
    # Shortest password accepted when a password is set or changed; common passwords (the
    # list in server/auth/common_passwords.txt), the username and one repeated character are
    # refused too (422 `weak_password`).
    password_min_length: int = 10
    # Rows at most in one bulk import of accounts and units.
    import_max_rows: int = 10_000
    # Largest CSV or XLSX file a bulk import accepts.
    import_max_bytes: int = 5 * 1024 * 1024

    # --- real time ------------------------------------------------------------
    # Frames a slow socket may have waiting before it is cut off with 4408 (a frame waits only
    # when the socket's kernel and transport buffers are full; otherwise it is written at once).
    ws_send_queue_frames: int = 2_000
    # Largest WebSocket frame a client may send (close 1009 beyond).
    ws_max_frame_bytes: int = 65_536
    # Client frames per user per second (token bucket refill) and burst size.
    ws_rate_per_sec: float = 20.0
    # Burst of client frames allowed above the steady rate.
    ws_rate_burst: int = 60
    # Time a new socket has to send its auth frame (close 4401 after).
    ws_auth_timeout_secs: float = 10.0
    # An idle HTTP connection is kept open this long for the next request. Behind a
    # reverse proxy it must outlast the proxy's own idle time for its connections to the
    # node (deploy/nginx: keepalive_timeout 60s), or the proxy finds them closed.
    http_keep_alive_secs: float = 75.0
    # Protocol-level pings keep NAT mappings open and detect dead tablets.
    ws_ping_interval_secs: float = 20.0
    # A socket that does not answer a ping within this is closed.
    ws_ping_timeout_secs: float = 20.0
    # permessage-deflate keeps a zlib context per socket (~50 KiB each) and compresses every
    # frame once per socket; off by default, on for thin links where bytes cost more.
    ws_per_message_deflate: bool = False
    # UTF-8 bytes a slow socket may have waiting before it is cut off with 4408 (0: no
    # bound but the frame count): a few sockets that never read must not grow the server.
    ws_send_queue_bytes: int = 4 * 1024 * 1024
    # Topics one subscribe frame may name; more closes the socket with 4400. As many as a
    # socket may follow: a client resubscribes everything it follows in one frame.
    ws_max_topics_per_frame: int = 256
    # Events older than this are pruned from the log; resuming before them gives reset.
    event_retention_secs: int = 30 * 24 * 3600
    # How often each node compares its topics with the log, to recover dropped messages. An
    # event is recovered when it is still missing at the next sweep (so within two intervals);
    # after Redis comes back, at once.
    log_sweep_interval_secs: float = 2.0
    # How often the event loop's lag is sampled for /metrics (dienhong_event_loop_lag_seconds:
    # how long a callback due now waits for the loop). 0: not sampled.
    loop_lag_interval_secs: float = 0.5
    # Events sent per query when a socket resumes.
    resume_batch: int = 500
    # Messages (events of a write, signals) waiting to go to Redis before the oldest is dropped
    # (other nodes recover dropped events from the log).
    broker_queue_messages: int = 10_000
    # Deadline of one round trip to Redis from the fast path (publishing, the subscription's
    # liveness PING, presence): a Redis that stops answering never holds up a request or a
    # socket longer.
    broker_timeout_secs: float = 2.0
    # Container objects allocated between the garbage collector's young passes (Python's
    # default: 700).
    gc_young_objects: int = 7000
    # Middle passes before a full pass is considered (Python's default: 10). A full pass walks
    # every socket's objects (about 0.8 s at 8,000 sockets); with the defaults a reconnect storm
    # set off one after every few hundred sockets.
    gc_full_after: int = 100
    # The hub writes a frame straight into a socket's transport when it can take it at
    # once (uvicorn's protocol extended in server/compat/uvicorn_ws.py); off: every frame
    # goes through ASGI, with uvicorn's stock protocol (slower fan-out, no private internals).
    direct_socket_writes: bool = True
    # Reads (GET and HEAD, and what they wait for) run ahead of writes on the node's event
    # loop (server/loop.py, server/compat/asyncio_loop.py); off: asyncio's stock loop and
    # uvicorn's stock HTTP protocol, every callback in arrival order.
    reads_first: bool = True

    # --- files ----------------------------------------------------------------
    # Largest upload (413 beyond, checked while streaming).
    max_upload_bytes: int = 50 * 1024 * 1024
    # Checking an uploaded PDF (pypdf, in a worker process) may take this long.
    pdf_worker_timeout_secs: float = 20.0
    # Address-space limit of each PDF worker process (RLIMIT_AS).
    pdf_worker_memory_mb: int = 512
    # Pages of a new PDF rendered ahead right after upload.
    render_ahead_pages: int = 8
    # Rendered pages kept on disk at most (0: no limit); the least recently used go first and
    # are rendered again when asked for.
    render_cache_max_bytes: int = 2 * 1024 * 1024 * 1024
    # How often the render cache is checked against its limit.
    render_cache_trim_interval_secs: float = 600.0
    # A page used this recently is never trimmed, whatever the limit.
    render_cache_keep_secs: float = 600.0
    # Page image width when the client asks for none.
    render_default_width: int = 1024
    # Largest page image width a client may ask for.
    render_max_width: int = 2400
    # Widths a WebP page image is rendered at: an asked width is rounded up to the next
    # step (the largest at most), so tablets of one model share cached renders.
    render_width_steps: tuple[str, ...] = ("640", "800", "1024", "1280", "1600", "1920", "2400")
    # Quality (0-100) of lossy WebP page images: scans and photographs (text pages are
    # encoded losslessly, which is smaller for them).
    render_webp_quality: int = 80
    # When a reverse proxy that honours X-Accel-Redirect is in front (nginx), the URL
    # prefix of its internal location for the data directory's renders/ (e.g.
    # "/_dienhong_renders/"); empty: the server sends page images itself.
    accel_redirect_prefix: str = ""
    # The same for whole files (uploaded originals, attachments, stamped copies of PDFs):
    # the URL prefix of the proxy's internal location for the data directory's files/
    # (e.g. "/_dienhong_files/"); empty: the server sends whole files itself.
    accel_redirect_files_prefix: str = ""
    # A stamped copy of a PDF sent through that proxy location is removed this many seconds
    # after the answer: the proxy opens it as soon as it reads the answer's headers (then
    # the name may go); a crash leaves it to the sweep of temporary files.
    stamped_copy_grace_secs: float = 120.0
    # Text answers (HTML, CSS, JS, JSON) this size and up are compressed (brotli or gzip);
    # 0 turns compression off (a proxy in front that compresses itself).
    compress_min_bytes: int = 1024
    # Memory for the most recently asked page images of this node (0: none); a burst of
    # tablets on the presented page is then answered from memory.
    render_memory_cache_bytes: int = 64 * 1024 * 1024
    # How long a node keeps that a user may read a file, for page images only: a tablet
    # turning pages, or downloading a 200-page document for offline reading, is checked
    # once, not for every page. A reader whose access is taken away may still fetch that
    # file's pages for this long on a node that answered them just before; the file
    # itself, its metadata and its annotations are checked on every request. `0` turns it
    # off.
    page_grant_cache_secs: float = 10.0
    # Grants kept in that cache per node at most (the one kept longest goes first).
    page_grant_cache_size: int = 20_000
    # Worker processes that check uploaded PDFs.
    pdf_parse_workers: int = 1
    # Worker processes that read the text of uploaded PDFs for search, after the upload
    # has been answered.
    pdf_text_workers: int = 1
    # Reading the text of one PDF (pdfium, in a text worker) may take this long; past it
    # the document is kept without searchable text.
    pdf_text_timeout_secs: float = 60.0
    # Worker processes that render pages.
    pdf_render_workers: int = 2
    # Worker processes that stamp downloads with the reader's name.
    pdf_stamp_workers: int = 2
    # A worker is replaced after this many jobs, so leaks in the PDF libraries stay bounded.
    pdf_worker_max_jobs: int = 500
    # Jobs waiting for a worker before new ones are refused with 429.
    pdf_queue_limit: int = 256
    # Time limit of one page render (the worker is replaced after).
    pdf_render_timeout_secs: float = 30.0
    # Time limit of stamping one document.
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
    # Largest channel message body.
    max_message_bytes: int = 16_384
    # Largest instruction body.
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
    # Shortest gap between two coalesced poll progress events.
    coalesce_interval_secs: float = 0.25
    # Shortest gap between two coalesced `directive.receipts` events: the sender's roll-up
    # trails the last read or acknowledgement by at most this plus one write.
    receipt_progress_secs: float = 0.1
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
    # Delivery confirmations waiting to be written, per node.
    receipt_queue_limit: int = 20_000
    # Channel message posts and edits (and directive replies) written per group-commit
    # transaction at most. Small batches keep reads quick under a storm of posts: the answers
    # of one batch, and the posts their senders send next, each take the event loop in one
    # wave, and everything else waits behind it. At 64 posters a batch of 16 kept a read's
    # p99 at 2-3.5x its idle value (200: 5-11x) for about as many posts a second.
    message_batch: int = 16
    # Posts and edits waiting to be written, per node, before new ones get 429 busy.
    message_queue_limit: int = 5_000
    # A node's presence entries in Redis expire unless refreshed (a dead node's users go
    # offline by themselves).
    presence_ttl_secs: int = 60
    # The city's time zone (IANA name): `receipts.csv` writes its times in it. An unknown name
    # stops the server at start.
    city_timezone: str = "Asia/Ho_Chi_Minh"

    # --- meetings and media ---------------------------------------------------
    # Speaking time of a new meeting unless it sets its own.
    default_speech_limit_secs: int = 300
    # People in one meeting at most.
    meeting_max_participants: int = 1_000
    # Agenda items per meeting.
    meeting_max_agenda_items: int = 300
    # Nesting depth of agenda sub-items.
    meeting_agenda_max_depth: int = 3
    # Documents attached to one agenda item.
    meeting_max_documents_per_item: int = 20
    # Waiting requests for the floor in one meeting (each delegate has at most one per kind).
    meeting_max_waiting_speakers: int = 1_000
    # "Time is nearly up" goes out this many seconds before a speech's limit.
    speech_warning_secs: int = 30
    # How often a node looks for speeches granted elsewhere to time them too.
    speech_timer_rescan_secs: float = 5.0
    # The hall's projector shows a closed vote's result this long, then the speaker and timer
    # again (served to the page by `GET /api/v1/display`).
    projector_result_secs: int = 60
    # A delegate tablet downloads at most this many of a meeting's documents ahead of the
    # session into its offline cache (served to the page by `GET /api/v1/display`).
    preload_max_documents: int = 40
    # ... and at most this many bytes of page images in all; past it the rest loads on view.
    preload_max_bytes: int = 300_000_000
    # Publishing a meeting's agenda (and changing it once published) tells every online
    # delegate tablet to download the meeting's documents at once, without opening it.
    preload_on_publish: bool = True
    # The data one reader keeps on one document, all annotations together (bounds
    # the work of building their `annotated.pdf`); past it 413 `annotations_too_large`.
    annotation_max_bytes: int = 1_048_576
    # Size of one annotation's data; larger ones get 413 `too_large`.
    annotation_max_data_bytes: int = 65_536
    # Points one ink stroke may have; longer strokes get 422 `stroke_too_long`.
    annotation_max_points_per_stroke: int = 2_000
    # Annotations one reader may keep on one document.
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
    # A remote participant from whom nothing arrived for this long is shown as lost; when
    # it is the speaker, the speech timer stands still until their audio is back.
    media_audio_lost_secs: float = 2.0
    # How often each remote participant's connection quality is measured.
    media_quality_poll_secs: float = 1.0
    # A remote speaker whose audio was lost keeps the floor this long for rejoining;
    # past it the speech ends and the floor is free.
    media_floor_grace_secs: float = 60.0

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
    # The issuing body at the top left of the minutes.
    minutes_issuer: str = "HỘI ĐỒNG NHÂN DÂN THÀNH PHỐ"
    # The symbol after the minutes' number field ("Số: …/BB-HĐND").
    minutes_doc_symbol: str = "BB-HĐND"
    # The locality of the minutes' place and date line ("Hà Nội, ngày 23 tháng 11 năm 2026");
    # empty: the date alone.
    minutes_locality: str = ""

    # --- digital signatures -----------------------------------------------------
    # PKCS#11 module of the signing tokens or HSM (e.g. /usr/lib/softhsm/libsofthsm2.so,
    # or the token vendor's library); empty: no tokens.
    signing_pkcs11_module: str = ""
    # Label of a person's own token; "{username}" stands for their username.
    signing_person_token_label: str = "{username}"
    # Label of the key and of its certificate on every token.
    signing_key_label: str = "signing"
    # The organisation's seal: the label of its token on the server's PKCS#11 module...
    signing_org_token_label: str = ""
    # ...and that token's PIN (a secret: no default).
    signing_org_pin: str = ""
    # Or, for small installations, the seal in a PKCS#12 file...
    signing_org_pkcs12: str = ""
    # ...and its passphrase (a secret: no default).
    signing_org_pkcs12_passphrase: str = ""
    # RFC 3161 timestamp authority; every signature is timestamped (PAdES B-LT).
    signing_tsa_url: str = ""
    # CA certificates trusted for signing and for checking uploads: a PEM/DER file
    # (a bundle) or a directory of them, e.g. the national government CA certificates.
    signing_trust_roots: str = ""
    # Checking an upload may fetch OCSP responses and CRLs from the URLs its
    # certificates name (off: only what the file embeds is used).
    signing_fetch_revocation: bool = True
    # Time limit of one request to a TSA, OCSP responder or CRL server.
    signing_network_timeout_secs: float = 10.0
    # Signatures of one PDF checked at most.
    signing_max_signatures: int = 20
    # The place printed before the date on official documents ("Hà Nội, ngày …").
    signing_document_place: str = "Hà Nội"

    # --- operations -----------------------------------------------------------
    # Log level (DEBUG, INFO, WARNING…).
    log_level: str = "INFO"
    # `false` forces plain text logs (else DIENHONG_LOG_FORMAT decides).
    log_json: bool = True
    # "auto": readable lines when standard error is a terminal, JSON lines otherwise;
    # "json" or "text" force one (DIENHONG_LOG_JSON=false also forces text).
    log_format: str = "auto"
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

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id and self.oidc_redirect_url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every ``DIENHONG_<FIELD>`` variable; unknown or malformed ones are errors.

        An unknown variable is most often a misspelt setting that would otherwise be
        ignored in silence; the error names the closest valid one."""
        env = os.environ if environ is None else environ
        hints = get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        unknown: list[str] = []
        for key, raw in env.items():
            if not key.startswith(ENV_PREFIX):
                continue
            name = key[len(ENV_PREFIX) :].lower()
            if name not in names:
                if key not in OTHER_VARIABLES and not key.startswith(TEST_PREFIX):
                    unknown.append(key)
                continue
            try:
                values[name] = _convert(hints[name], raw)
            except (TypeError, ValueError) as exc:
                raise SettingsError(f"{key}: {exc}") from exc
        if unknown:
            raise SettingsError("; ".join(unknown_variable(key) for key in sorted(unknown)))
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


def unknown_variable(key: str) -> str:
    """The message for a ``DIENHONG_*`` variable that names no setting: the closest that do."""
    # Compared without the prefix, which every name shares and which would make any two
    # names look alike.
    valid = [name[len(ENV_PREFIX) :] for name in setting_names() + sorted(OTHER_VARIABLES)]
    close = difflib.get_close_matches(key[len(ENV_PREFIX) :], valid, n=1, cutoff=0.6)
    if close:
        return f"unknown variable {key}; did you mean {ENV_PREFIX}{close[0]}?"
    return f"unknown variable {key}; no setting has a similar name (see README's settings table)"
