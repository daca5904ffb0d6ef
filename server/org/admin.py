"""Administration of accounts: search and paging over every account, and bulk import of
accounts and units from a CSV or XLSX file, checked in full before anything is written."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.exc import IntegrityError

from server.auth.passwords import hash_password, password_problem
from server.auth.principal import Principal
from server.auth.throttle import throttled_usernames
from server.context import Context
from server.errors import BadRequest, Conflict, PayloadTooLarge, Unprocessable
from server.org.models import Confidentiality, Role, Unit, UnitKind, User
from server.org.service import require_admin, unit_json, user_json

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
NAME_MAX = 200
# Columns of an import file; the first row names them (in any order, any case).
IMPORT_COLUMNS = (
    "type",
    "username",
    "display_name",
    "title",
    "unit",
    "parent",
    "unit_kind",
    "roles",
    "clearance",
    "password",
)
XLSX_MAGIC = b"PK\x03\x04"


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search_users(
    ctx: Context,
    actor: Principal,
    *,
    q: str = "",
    unit_id: int | None = None,
    role: Role | None = None,
    active: bool | None = None,
    page: int = 1,
    per_page: int = 50,
) -> dict[str, Any]:
    """One page of accounts matching the filters, ordered by username, with the total
    and whether each is held back by a sign-in throttle now (admin)."""
    require_admin(actor)
    conditions: list[Any] = []
    if q:
        pattern = _like(q)
        conditions.append(
            or_(
                func.lower(User.username).like(pattern, escape="\\"),
                func.lower(User.display_name).like(pattern, escape="\\"),
                func.lower(User.title).like(pattern, escape="\\"),
            )
        )
    if unit_id is not None:
        conditions.append(User.unit_id == unit_id)
    if role is not None:
        # Roles are a JSON list of names; each name is quoted in its text form.
        conditions.append(cast(User.roles, String).like(f'%"{role.value}"%'))
    if active is not None:
        conditions.append(User.active.is_(active))
    async with ctx.read() as session:
        total = (
            await session.execute(select(func.count()).select_from(User).where(*conditions))
        ).scalar_one()
        rows = (
            (
                await session.execute(
                    select(User)
                    .where(*conditions)
                    .order_by(User.username)
                    .offset((page - 1) * per_page)
                    .limit(per_page)
                )
            )
            .scalars()
            .all()
        )
    throttled = await throttled_usernames(ctx, [user.username for user in rows])
    return {
        "users": [
            user_json(user)
            | {
                "must_change_password": user.must_change_password,
                "throttled_until": throttled.get(user.username),
            }
            for user in rows
        ],
        "total": int(total),
        "page": page,
        "per_page": per_page,
    }


@dataclass
class ImportRow:
    line: int
    values: dict[str, str]


@dataclass
class ImportPlan:
    """What an import file would create, and every problem found in it."""

    rows: int = 0
    units: list[dict[str, Any]] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)

    def problem(self, line: int, column: str, code: str, message: str, **params: Any) -> None:
        """One problem of a row: ``code`` and ``params`` for the pages (which say it in the
        reader's language), ``message`` in English for programs and logs."""
        self.problems.append(
            {"row": line, "field": column, "code": code, "params": params, "message": message}
        )


def read_table(raw: bytes, max_rows: int) -> list[ImportRow]:
    """The rows of a CSV (UTF-8, comma or semicolon) or XLSX file, keyed by column name."""
    if raw.startswith(XLSX_MAGIC):
        table = _xlsx_rows(raw)
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise BadRequest(
                "The file is neither UTF-8 CSV nor XLSX.", code="invalid_import_file"
            ) from exc
        first = text.split("\n", 1)[0]
        delimiter = ";" if first.count(";") > first.count(",") else ","
        table = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    if not table or not any(cell.strip() for cell in table[0]):
        raise BadRequest("The file has no header row.", code="invalid_import_file")
    header = [cell.strip().lower() for cell in table[0]]
    unknown = [name for name in header if name and name not in IMPORT_COLUMNS]
    if unknown:
        raise BadRequest(
            f"Unknown columns {unknown}; the columns are {list(IMPORT_COLUMNS)}.",
            code="invalid_import_file",
        )
    rows: list[ImportRow] = []
    for index, cells in enumerate(table[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue
        if len(rows) >= max_rows:
            raise Unprocessable(f"The file has more than {max_rows} rows.", code="import_too_large")
        values = {
            name: (cells[i].strip() if i < len(cells) else "")
            for i, name in enumerate(header)
            if name
        }
        rows.append(ImportRow(index, values))
    return rows


def _xlsx_rows(raw: bytes) -> list[list[str]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a damaged file
        raise BadRequest(
            f"The XLSX file cannot be read: {exc}.", code="invalid_import_file"
        ) from exc
    try:
        sheet = book.worksheets[0]
        return [
            ["" if cell is None else str(cell) for cell in row]
            for row in sheet.iter_rows(values_only=True)
        ]
    finally:
        book.close()


async def plan_import(ctx: Context, rows: list[ImportRow]) -> ImportPlan:
    """Check every row against the database and the rest of the file; nothing is written."""
    plan = ImportPlan(rows=len(rows))
    async with ctx.read() as session:
        units = (await session.execute(select(Unit))).scalars().all()
        wanted = [row.values.get("username", "") for row in rows]
        taken = (
            set(
                (
                    await session.execute(
                        select(User.username).where(User.username.in_([n for n in wanted if n]))
                    )
                )
                .scalars()
                .all()
            )
            if any(wanted)
            else set()
        )
    by_name: dict[str, list[int]] = {}
    for unit in units:
        by_name.setdefault(unit.name, []).append(unit.id)
    ids = {unit.id for unit in units}
    new_units: dict[str, int] = {}
    seen_usernames: set[str] = set()
    min_length = ctx.settings.password_min_length

    def resolve(line: int, column: str, ref: str) -> dict[str, Any] | None:
        # A unit by "#id", by the name of an existing unit, or of a unit made earlier here.
        if not ref:
            plan.problem(line, column, "unit_required", "A unit is required.")
            return None
        if ref.startswith("#") and ref[1:].isdigit():
            if int(ref[1:]) in ids:
                return {"id": int(ref[1:])}
            plan.problem(
                line, column, "unit_id_unknown", f"No unit has the id {ref[1:]}.", id=ref[1:]
            )
            return None
        if ref in new_units:
            return {"new": new_units[ref]}
        found = by_name.get(ref, [])
        if len(found) == 1:
            return {"id": found[0]}
        if found:
            plan.problem(
                line,
                column,
                "unit_name_ambiguous",
                f"Several units are named {ref!r}; write #id instead.",
                name=ref,
            )
        else:
            plan.problem(line, column, "unit_name_unknown", f"No unit is named {ref!r}.", name=ref)
        return None

    for row in rows:
        v, line = row.values, row.line
        kind = (v.get("type") or ("user" if v.get("username") else "")).lower()
        if kind == "unit":
            name = v.get("unit", "")
            if not name or len(name) > NAME_MAX:
                plan.problem(
                    line,
                    "unit",
                    "unit_name_length",
                    f"A unit name has 1 to {NAME_MAX} characters.",
                    max=NAME_MAX,
                )
                continue
            if name in new_units or name in by_name:
                plan.problem(
                    line, "unit", "unit_exists", f"A unit named {name!r} exists already.", name=name
                )
                continue
            try:
                unit_kind = UnitKind(v.get("unit_kind", "").lower())
            except ValueError:
                kinds = [k.value for k in UnitKind]
                plan.problem(
                    line,
                    "unit_kind",
                    "unit_kind_invalid",
                    f"unit_kind is one of {kinds}.",
                    kinds=", ".join(kinds),
                )
                continue
            parent = resolve(line, "parent", v.get("parent", ""))
            if parent is None:
                continue
            new_units[name] = len(plan.units)
            plan.units.append(
                {"line": line, "name": name, "kind": unit_kind.value, "parent": parent}
            )
        elif kind == "user":
            problems_before = len(plan.problems)
            username = v.get("username", "")
            if not USERNAME_PATTERN.match(username):
                plan.problem(
                    line,
                    "username",
                    "username_invalid",
                    "A username has 1 to 64 letters, digits or . _ @ -.",
                )
            elif username in seen_usernames:
                plan.problem(
                    line,
                    "username",
                    "username_twice",
                    f"{username!r} appears twice in the file.",
                    username=username,
                )
            elif username in taken:
                plan.problem(
                    line,
                    "username",
                    "username_taken",
                    f"The username {username!r} is taken.",
                    username=username,
                )
            seen_usernames.add(username)
            display_name = v.get("display_name", "")
            if not display_name or len(display_name) > NAME_MAX:
                plan.problem(
                    line,
                    "display_name",
                    "display_name_length",
                    f"A display name has 1 to {NAME_MAX} characters.",
                    max=NAME_MAX,
                )
            title = v.get("title", "")
            if len(title) > NAME_MAX:
                plan.problem(
                    line,
                    "title",
                    "title_length",
                    f"A title has at most {NAME_MAX} characters.",
                    max=NAME_MAX,
                )
            roles: list[str] = []
            for name in re.split(r"[;,\s]+", v.get("roles", "").lower()):
                if not name:
                    continue
                try:
                    roles.append(Role(name).value)
                except ValueError:
                    all_roles = [r.value for r in Role]
                    plan.problem(
                        line,
                        "roles",
                        "role_unknown",
                        f"{name!r} is not a role; the roles are {all_roles}.",
                        role=name,
                        roles=", ".join(all_roles),
                    )
            try:
                clearance = Confidentiality(v.get("clearance", "").lower() or "none")
            except ValueError:
                levels = [c.value for c in Confidentiality]
                plan.problem(
                    line,
                    "clearance",
                    "clearance_invalid",
                    f"clearance is one of {levels}.",
                    levels=", ".join(levels),
                )
                clearance = Confidentiality.NONE
            password = v.get("password", "")
            if password:
                weak = password_problem(password, min_length=min_length, username=username)
                if weak:
                    plan.problem(
                        line, "password", f"password_{weak.reason}", weak.message, **weak.params
                    )
            unit = resolve(line, "unit", v.get("unit", ""))
            if len(plan.problems) == problems_before and unit is not None:
                plan.users.append(
                    {
                        "line": line,
                        "username": username,
                        "display_name": display_name,
                        "title": title,
                        "unit": unit,
                        "roles": sorted(set(roles)),
                        "clearance": clearance.value,
                        "password": password,
                    }
                )
        else:
            plan.problem(
                line, "type", "type_invalid", "type is 'unit' or 'user' (or give a username)."
            )
    return plan


def plan_json(plan: ImportPlan, *, dry_run: bool) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "rows": plan.rows,
        "units": len(plan.units),
        "users": len(plan.users),
        "problems": plan.problems,
    }


async def import_accounts(
    ctx: Context, actor: Principal, raw: bytes, *, dry_run: bool
) -> dict[str, Any]:
    """Check an import file and, unless ``dry_run``, create all it holds in one transaction.

    Any problem in any row refuses the whole file (422 ``import_invalid`` listing every
    problem): nothing is written unless everything can be.
    """
    require_admin(actor)
    if len(raw) > ctx.settings.import_max_bytes:
        raise PayloadTooLarge(f"An import file has at most {ctx.settings.import_max_bytes} bytes.")
    rows = await asyncio.to_thread(read_table, raw, ctx.settings.import_max_rows)
    plan = await plan_import(ctx, rows)
    if dry_run:
        return plan_json(plan, dry_run=True)
    if plan.problems:
        raise Unprocessable(
            f"The file has {len(plan.problems)} problems; nothing was imported.",
            code="import_invalid",
            details=plan.problems,
        )
    # One hash per distinct password: Argon2 is slow on purpose.
    hashes: dict[str, str] = {}
    for spec in plan.users:
        if spec["password"] and spec["password"] not in hashes:
            hashes[spec["password"]] = await hash_password(spec["password"])
    try:
        async with ctx.write() as w:
            made: list[Unit] = []
            for spec in plan.units:
                parent = spec["parent"]
                parent_id = parent["id"] if "id" in parent else made[parent["new"]].id
                unit = Unit(
                    name=spec["name"], kind=spec["kind"], parent_id=parent_id, created_at=w.now
                )
                w.session.add(unit)
                await w.session.flush()
                made.append(unit)
                await w.audit(
                    actor.id, "unit.create", f"unit:{unit.id}", unit_json(unit) | {"import": True}
                )
            users: list[User] = []
            for spec in plan.users:
                unit_ref = spec["unit"]
                unit_id = unit_ref["id"] if "id" in unit_ref else made[unit_ref["new"]].id
                user = User(
                    username=spec["username"],
                    display_name=spec["display_name"],
                    title=spec["title"],
                    unit_id=unit_id,
                    roles=spec["roles"],
                    clearance=spec["clearance"],
                    is_unit_head=False,
                    password_hash=hashes.get(spec["password"]),
                    must_change_password=bool(spec["password"]),
                    active=True,
                    token_version=0,
                    created_at=w.now,
                )
                w.session.add(user)
                users.append(user)
            await w.session.flush()
            for user in users:
                await w.audit(
                    actor.id, "user.create", f"user:{user.id}", user_json(user) | {"import": True}
                )
            await w.audit(
                actor.id,
                "org.import",
                "org",
                {"rows": plan.rows, "units": len(made), "users": len(users)},
            )
    except IntegrityError as exc:
        raise Conflict(
            "Another change took one of these usernames meanwhile; nothing was imported.",
            code="username_taken",
        ) from exc
    return plan_json(plan, dry_run=False)
