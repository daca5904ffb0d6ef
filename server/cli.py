"""The ``dienhong`` command: serve, migrate, demo, create-user, unlock, verify-audit,
rotate-key, backup, restore.

Every command acts on the data directory DIENHONG_DATA_DIR (default ./dienhong-data) or on
the database DIENHONG_DATABASE_URL; serve and demo print which one they use."""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from server.settings import Settings, SettingsError

if TYPE_CHECKING:
    from server.context import Context


def uvicorn_options(settings: Settings) -> dict[str, object]:
    """Server options shared by ``serve``, the tests and the benchmarks."""
    from server.compat.uvicorn_ws import websocket_protocol

    return {
        # uvicorn's sans-I/O websockets protocol, plus a direct write path for the hub.
        "ws": websocket_protocol(settings.direct_socket_writes),
        "ws_max_size": settings.ws_max_frame_bytes,
        "ws_per_message_deflate": settings.ws_per_message_deflate,
        "ws_ping_interval": settings.ws_ping_interval_secs,
        "ws_ping_timeout": settings.ws_ping_timeout_secs,
        "timeout_keep_alive": settings.http_keep_alive_secs,
        # Reads served ahead of writes (server.loop), or the stock loop and protocol.
        "loop": "server.loop:new_event_loop" if settings.reads_first else "asyncio",
        "http": "server.compat.uvicorn_http:ReadsFirstHttp"
        if settings.reads_first
        else "httptools",
        "lifespan": "on",
        "access_log": False,
        "timeout_graceful_shutdown": 10,
        "log_config": None,
    }


def gc_thresholds(settings: Settings) -> tuple[int, int, int]:
    """The collector's thresholds from the settings (see ``gc_young_objects``)."""
    young, full = settings.gc_young_objects, settings.gc_full_after
    if young < 1 or full < 1:
        raise SettingsError(
            "DIENHONG_GC_YOUNG_OBJECTS and DIENHONG_GC_FULL_AFTER must be "
            "at least 1 (0 would turn the collector off)"
        )
    return young, gc.get_threshold()[1], full


def storage_lines(settings: Settings) -> list[str]:
    """Where this process keeps its data, as absolute paths (and the database without its
    password), so that a demo seeded into one place and a server started on another show
    it at once."""
    lines = [f"data directory: {settings.data_dir.resolve()}"]
    if settings.database_url:
        from sqlalchemy.engine import make_url

        shown = make_url(settings.database_url).render_as_string(hide_password=True)
        lines.append(f"database: {shown}")
    else:
        lines.append(f"database: {(settings.data_dir / 'dienhong.sqlite3').resolve()}")
    return lines


def port_problem(host: str, port: int) -> str | None:
    """One sentence when ``host:port`` cannot be listened on (taken, or not ours)."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return f"The address {host!r} is not known on this machine; check --host."
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"Port {port} on {host} is already in use (is another server "
                    "running?); stop it or choose another port with --port."
                )
            if exc.errno == errno.EACCES:
                return (
                    f"Port {port} on {host} needs privileges this user lacks; choose a "
                    "port above 1023 with --port."
                )
            return f"Cannot listen on {host}:{port}: {exc.strerror}."
    return None


def _serve(settings: Settings, host: str, port: int, workers: int = 1) -> int:
    import uvicorn

    from server.app import create_app
    from server.logs import configure_logging
    from server.migrate import migrate
    from server.workers import Supervisor, check_workers, listening_socket, preload

    thresholds = gc_thresholds(settings)
    refusal = check_workers(settings, workers)
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return 1
    configure_logging(settings.log_level, log_format=settings.log_format, as_json=settings.log_json)
    for line in storage_lines(settings):
        print(line, file=sys.stderr)
    problem = port_problem(host, port)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    before, after = asyncio.run(migrate(settings))
    if before != after:
        print(f"migrated database from {before or 'empty'} to {after}", file=sys.stderr)
    if workers > 1:
        # Bound once here; every worker accepts on it and builds its own application.
        preload()
        gc.collect()
        gc.freeze()
        return Supervisor(settings, listening_socket(host, port), workers, thresholds).run()
    app = create_app(settings)
    # Everything loaded so far (modules, the app) lives as long as the process: keep it out
    # of the cyclic collector, whose full passes otherwise walk it all and stall fan-out.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    uvicorn.run(app, host=host, port=port, **uvicorn_options(settings))  # type: ignore[arg-type]
    return 0


def _migrate(settings: Settings) -> int:
    from server.migrate import migrate

    before, after = asyncio.run(migrate(settings))
    print(f"database at {after} (was {before or 'empty'})")
    return 0


async def _with_context(settings: Settings, job: object, *, load_features: bool = True) -> int:
    from server.app import create_app
    from server.errors import ApiError

    # Commands that need no feature's routes skip importing them (a faster start).
    app = create_app(settings, features=None if load_features else [])
    ctx = app.state.ctx
    try:
        result: int = await job(ctx)  # type: ignore[operator]
        return result
    except ApiError as exc:
        # A refusal of the domain (name taken, unknown unit…) is the user's to fix.
        print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
        return 1
    finally:
        await ctx.broker.stop()
        await ctx.db.dispose()


def _create_user(settings: Settings, args: argparse.Namespace) -> int:
    from server.migrate import migrate
    from server.org.models import Confidentiality, Role, UnitKind
    from server.org.service import create_unit, create_user, list_units

    password = args.password or os.environ.get("DIENHONG_NEW_PASSWORD")
    if password is None:
        password = getpass.getpass(f"password for {args.username}: ")

    async def job(ctx: Context) -> int:
        unit_id = args.unit_id
        if unit_id is None:
            # A fresh installation has no unit yet: the first account (the administrator
            # who then builds the tree over the API) comes with the root unit.
            async with ctx.read() as session:
                if await list_units(session):
                    print(
                        "error: give --unit-id (the organisation already has units)",
                        file=sys.stderr,
                    )
                    return 2
            root = await create_unit(
                ctx,
                None,
                name=args.root_unit_name,
                kind=UnitKind.STANDING_COMMITTEE,
                parent_id=None,
            )
            print(f"created root unit {root.name} (id {root.id})")
            unit_id = root.id
        user = await create_user(
            ctx,
            None,
            username=args.username,
            display_name=args.display_name or args.username,
            unit_id=unit_id,
            roles=[Role(r) for r in args.role],
            clearance=Confidentiality(args.clearance),
            password=password,
        )
        print(f"created user {user.username} (id {user.id})")
        return 0

    asyncio.run(migrate(settings))
    return asyncio.run(_with_context(settings, job, load_features=False))


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from server.demo import seed_demo
    from server.migrate import migrate

    async def job(ctx: object) -> int:
        _city, summary = await seed_demo(
            ctx,
            password=args.password,  # type: ignore[arg-type]
            communes=args.communes,
            delegates=args.delegates,
        )
        for line in summary:
            print(line)
        return 0

    for line in storage_lines(settings):
        print(line)

    asyncio.run(migrate(settings))
    return asyncio.run(_with_context(settings, job))


def _unlock(settings: Settings, args: argparse.Namespace) -> int:
    from server.auth.throttle import lift_throttle_of

    async def job(ctx: Context) -> int:
        lifted = await lift_throttle_of(ctx, None, args.username)
        print(f"lifted {lifted} sign-in throttle(s) of {args.username}")
        return 0

    return asyncio.run(_with_context(settings, job, load_features=False))


def _rotate_key(settings: Settings) -> int:
    from sqlalchemy import func, select

    from meeting.polls.models import SealedBallot
    from server.audit_anchor import ed25519_key_id
    from server.auth.tokens import KeyRotationError, rotate_signing_key
    from server.db import Database

    async def sealed_ballots() -> int:
        db = Database(settings)
        try:
            async with db.read_session() as session:
                return int(
                    (
                        await session.execute(select(func.count()).select_from(SealedBallot))
                    ).scalar_one()
                )
        finally:
            await db.dispose()

    try:
        sealed = asyncio.run(sealed_ballots())
    except Exception as exc:  # no database yet, or one not migrated: say so, rotate nothing
        print(f"cannot read the database: {exc}", file=sys.stderr)
        return 1
    if sealed:
        print(
            f"{sealed} sealed ballot(s) of an open secret poll wait to be counted, and only "
            "the current key opens them: close the poll, then rotate the key",
            file=sys.stderr,
        )
        return 1
    try:
        old, new = rotate_signing_key(settings)
    except (KeyRotationError, ValueError) as exc:
        print(f"the key was not rotated: {exc}", file=sys.stderr)
        return 1
    print(
        f"new node key {ed25519_key_id(new)}; the old one, {ed25519_key_id(old)}, is retired "
        "(its public half stays in keys/retired/, so verify-audit still checks what it "
        "signed). Start every node again now: tokens signed with the old key are refused "
        "from then on, and everyone signs in again."
    )
    return 0


def _verify_audit(settings: Settings, trust_roots: str | None = None) -> int:
    from server.audit_anchor import (
        CheckpointFileError,
        checkpoint_path,
        node_verifiers,
        read_checkpoints,
        verify_anchored,
    )
    from server.db import Database
    from server.signing.checkpoints import OrganisationCheck
    from server.signing.trust import TrustRootsError, load_trust_roots

    try:
        roots = load_trust_roots(
            settings.signing_trust_roots if trust_roots is None else trust_roots
        )
    except (TrustRootsError, OSError) as exc:
        print(f"trust roots unreadable: {exc}", file=sys.stderr)
        return 1
    organisation = OrganisationCheck(
        tuple(roots),
        fetch=settings.signing_fetch_revocation,
        network_timeout_secs=settings.signing_network_timeout_secs,
    )

    async def run() -> int:
        try:
            checkpoints = read_checkpoints(checkpoint_path(settings))
            verifiers = node_verifiers(settings)
        except (CheckpointFileError, ValueError) as exc:
            print(f"audit checkpoints unreadable: {exc}", file=sys.stderr)
            return 1
        db = Database(settings)
        try:
            async with db.read_session() as session:
                report = await verify_anchored(session, checkpoints, verifiers, organisation)
        finally:
            await db.dispose()
        if report.ok:
            print(
                f"audit chain holds: {report.records} records, head {report.head_hash}, "
                f"{len(checkpoints)} signed checkpoints agree"
            )
            if organisation.countersigned:
                last = max(c.seq for c in checkpoints if c.org_signature)
                names = "; ".join(
                    f"{name} (certificate SHA-256 {print_})"
                    for print_, name in sorted(organisation.signers.items())
                )
                print(
                    f"{organisation.countersigned} checkpoints also signed by the "
                    f"organisation, up to record {last}: {names}"
                )
            if report.records and not checkpoints:
                # A server writes one when it starts: none at all means the file is gone,
                # or only command-line tools ever wrote to this database.
                print(
                    f"warning: no audit checkpoints in {checkpoint_path(settings)}; the "
                    "chain is not anchored outside the database",
                    file=sys.stderr,
                )
            return 0
        print(
            f"audit chain broken at record {report.first_bad_seq}: {report.problem}",
            file=sys.stderr,
        )
        return 1

    return asyncio.run(run())


def _backup(settings: Settings, dest: str) -> int:
    from server.backup import BackupError, backup

    try:
        manifest = asyncio.run(backup(settings, Path(dest)))
    except BackupError as exc:
        print(f"backup failed: {exc}", file=sys.stderr)
        return 1
    head = manifest["audit_head"]
    print(
        f"backup written to {dest}: {len(manifest['parts'])} parts, "
        f"{len(manifest['files'])} uploaded files, audit chain at record {head['seq']}"
    )
    return 0


def _restore(settings: Settings, source: str) -> int:
    from server.backup import BackupError, restore

    try:
        manifest = asyncio.run(restore(settings, Path(source)))
    except BackupError as exc:
        print(f"restore refused: {exc}", file=sys.stderr)
        return 1
    print(
        f"restored the backup of {manifest['created_at']} (version {manifest['version']}): "
        f"audit chain holds up to record {manifest['audit_head']['seq']}, "
        f"{len(manifest['files'])} uploaded files read back"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dienhong",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Settings come from DIENHONG_* environment variables (see the README's "
        "Configuration table). 'dienhong COMMAND --help' explains each command.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="apply pending migrations, then serve the API and the web pages",
        description="Apply pending database migrations, then serve the API, the /ws socket "
        "and the web pages until stopped (Ctrl+C). Prints the data directory "
        "and database it uses. With --workers N, N processes serve the one port.",
    )
    serve.add_argument(
        "--host", default=None, help="address to listen on (default DIENHONG_HOST, 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=int, default=None, help="port to listen on (default DIENHONG_PORT, 8000)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes accepting on the port, each a node of its own; above 1 "
        "needs DIENHONG_REDIS_URL (default DIENHONG_WORKERS, 1)",
    )
    commands.add_parser(
        "migrate",
        help="apply pending database migrations and exit",
        description="Bring the database up to date with this version and exit.",
    )
    demo = commands.add_parser(
        "demo",
        help="seed a demo city (units, accounts, a meeting) into the database",
        description="Seed a demo city into the data directory's database: the Standing "
        "Committee, committees, communes and wards, the accounts admin, "
        "standing, chair, secretary, delegate001... and ward001..., all with "
        "one password, and a meeting of the delegates today. Run it before "
        "'dienhong serve', with the same DIENHONG_DATA_DIR.",
    )
    demo.add_argument(
        "--password",
        required=True,
        help="the password of every demo account (at least 8 characters)",
    )
    demo.add_argument(
        "--communes",
        type=int,
        default=126,
        help="how many communes and wards, each with one staff account (default 126)",
    )
    demo.add_argument(
        "--delegates",
        type=int,
        default=95,
        help="how many delegates of the city council (default 95)",
    )
    user = commands.add_parser(
        "create-user",
        help="create an account (the first administrator, for instance)",
        description="Create an account. On an empty database the first account comes with "
        "the root unit of the organisation.",
    )
    user.add_argument("--username", required=True, help="the sign-in name")
    user.add_argument(
        "--display-name", default="", help="the name shown to others (default: the username)"
    )
    user.add_argument(
        "--unit-id",
        type=int,
        default=None,
        help="the user's unit; omitted on an empty organisation: a root unit is created",
    )
    user.add_argument(
        "--root-unit-name",
        default="Thường trực HĐND",
        help="name of the root unit created for the first user",
    )
    user.add_argument(
        "--role",
        action="append",
        default=[],
        choices=["admin", "standing", "chair", "secretary", "delegate", "staff", "auditor"],
        help="a role of the account; repeat for several",
    )
    user.add_argument(
        "--clearance",
        default="none",
        choices=["none", "confidential", "secret", "top_secret"],
        help="the highest confidentiality the user may read (default none)",
    )
    user.add_argument(
        "--password", default=None, help="or DIENHONG_NEW_PASSWORD, or asked for on the terminal"
    )
    unlock = commands.add_parser(
        "unlock",
        help="lift the sign-in throttle of a username",
        description="Let a username sign in again at once from every address, after too "
        "many failed attempts held it back.",
    )
    unlock.add_argument("username", help="the username to let sign in again")
    verify = commands.add_parser(
        "verify-audit",
        help="recompute the audit chain; exit 1 at the first bad record",
        description="Recompute the hash chain of the audit log and hold it against the "
        "signed checkpoints; check the organisation's signature of each "
        "checkpoint against the trust roots and name its signer. Exit 0 when "
        "all holds; otherwise print the first record or checkpoint at fault "
        "and exit 1.",
    )
    verify.add_argument(
        "--trust-roots",
        default=None,
        help="CA certificates (a PEM/DER file or a directory) to check the "
        "organisation's signatures against; default "
        "DIENHONG_SIGNING_TRUST_ROOTS",
    )
    commands.add_parser(
        "rotate-key",
        help="replace the node key (after a backup or a disk was lost); nodes stopped",
        description="Put a new node key (it signs session tokens and the audit checkpoints) "
        "in place of the data directory's, keeping the old one's public half in "
        "keys/retired/ so that verify-audit still checks what it signed. Run it with "
        "every node stopped, then start them: every session ends and everyone "
        "signs in again. Refused while an open secret poll holds sealed ballots.",
    )
    backup = commands.add_parser(
        "backup",
        help="write a consistent backup while the server runs",
        description="Write a consistent snapshot of the database, the uploaded files and the "
        "signing key into DEST, with a manifest of SHA-256 sums that 'dienhong "
        "restore' checks first.",
    )
    backup.add_argument("dest", help="a new (or empty) directory")
    restore = commands.add_parser(
        "restore",
        help="restore a backup into an empty data directory (and empty database)",
        description="Check a backup against its manifest, refuse a damaged or partial one, "
        "then restore it into an empty data directory (and empty database) and "
        "check the audit chain and every file.",
    )
    restore.add_argument("source", help="a directory written by 'dienhong backup'")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        try:
            return _serve(
                settings,
                args.host or settings.host,
                args.port or settings.port,
                settings.workers if args.workers is None else args.workers,
            )
        except SettingsError as exc:
            print(f"configuration error: {exc}", file=sys.stderr)
            return 2
    if args.command == "migrate":
        return _migrate(settings)
    if args.command == "demo":
        return _demo(settings, args)
    if args.command == "create-user":
        return _create_user(settings, args)
    if args.command == "unlock":
        return _unlock(settings, args)
    if args.command == "verify-audit":
        return _verify_audit(settings, args.trust_roots)
    if args.command == "rotate-key":
        return _rotate_key(settings)
    if args.command == "backup":
        return _backup(settings, args.dest)
    if args.command == "restore":
        return _restore(settings, args.source)
    return 2


if __name__ == "__main__":
    sys.exit(main())
