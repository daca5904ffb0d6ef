"""Units and users: creating, changing and reading the organisation."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.passwords import hash_password, password_problem
from server.auth.principal import Principal
from server.auth.throttle import lift_throttle
from server.context import Context, Write
from server.errors import Conflict, Forbidden, NotFound, Unprocessable
from server.events import emit_unit_updated, emit_user_sessions_ended, emit_user_updated
from server.org.models import Confidentiality, Role, Unit, UnitKind, User
from server.realtime.hub import CLOSE_AUTH
from server.realtime.log import Event

# The event that tells a user's clients, and every node's principal cache, of a change.
USER_UPDATED = "user.updated"
# Every token of the user was revoked: each node forgets the user and closes its sockets
# with 4401 (a type of its own: pages that refresh on ``user.updated`` need not try).
SESSIONS_ENDED = "user.sessions_ended"


def require_admin(actor: Principal) -> None:
    if not actor.is_admin:
        raise Forbidden("Only an administrator may change the organisation.")


def unit_json(unit: Unit) -> dict[str, object]:
    return {"id": unit.id, "name": unit.name, "kind": unit.kind, "parent_id": unit.parent_id}


def user_json(user: User) -> dict[str, object]:
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "unit_id": user.unit_id,
        "roles": list(user.roles),
        "clearance": user.clearance,
        "is_unit_head": user.is_unit_head,
        "active": user.active,
        "title": user.title or "",
    }


async def display_names(session: AsyncSession, user_ids: Iterable[int]) -> dict[int, str]:
    """Display names of the given users, by id (unknown ids are left out)."""
    ids = sorted(set(user_ids))
    names: dict[int, str] = {}
    for start in range(0, len(ids), 500):
        rows = await session.execute(
            select(User.id, User.display_name).where(User.id.in_(ids[start : start + 500]))
        )
        names.update({int(uid): str(name) for uid, name in rows})
    return names


async def list_units(session: AsyncSession) -> Sequence[Unit]:
    return (await session.execute(select(Unit).order_by(Unit.id))).scalars().all()


def descendants(units: Iterable[Unit], root_ids: Iterable[int]) -> set[int]:
    """``root_ids`` and every unit below them, from an already loaded unit list."""
    children: dict[int | None, list[int]] = {}
    for unit in units:
        children.setdefault(unit.parent_id, []).append(unit.id)
    found: set[int] = set()
    stack = list(root_ids)
    while stack:
        unit_id = stack.pop()
        if unit_id in found:
            continue
        found.add(unit_id)
        stack.extend(children.get(unit_id, ()))
    return found


async def unit_subtree(session: AsyncSession, root_ids: Iterable[int]) -> set[int]:
    return descendants(await list_units(session), root_ids)


_UNIT_BY_ID = select(Unit.id, Unit.name, Unit.kind, Unit.parent_id).where(
    Unit.id == bindparam("unit_id")
)


async def read_unit_json(ctx: Context, unit_id: int) -> dict[str, object]:
    """``unit_json`` of one unit in a single statement (no session); 404 when unknown."""
    row = await ctx.db.read_row(_UNIT_BY_ID, {"unit_id": unit_id})
    if row is None:
        raise NotFound(f"Unit {unit_id} does not exist.", code="unit_not_found")
    return {"id": row.id, "name": row.name, "kind": row.kind, "parent_id": row.parent_id}


async def get_unit(session: AsyncSession, unit_id: int) -> Unit:
    unit = await session.get(Unit, unit_id)
    if unit is None:
        raise NotFound(f"Unit {unit_id} does not exist.", code="unit_not_found")
    return unit


async def create_unit(
    ctx: Context, actor: Principal | None, *, name: str, kind: UnitKind, parent_id: int | None
) -> Unit:
    """Add a unit to the tree (admin, or the command line when ``actor`` is None)."""
    if actor is not None:
        require_admin(actor)
    async with ctx.write() as w:
        if parent_id is not None:
            await get_unit(w.session, parent_id)
        elif (await w.session.execute(select(Unit.id).where(Unit.parent_id.is_(None)))).first():
            raise Unprocessable(
                "The tree already has a root; give a parent_id.", code="root_exists"
            )
        unit = Unit(name=name, kind=kind.value, parent_id=parent_id, created_at=w.now)
        w.session.add(unit)
        await w.session.flush()
        await w.audit(
            actor.id if actor else None, "unit.create", f"unit:{unit.id}", unit_json(unit)
        )
    return unit


async def update_unit(
    ctx: Context, actor: Principal, unit_id: int, *, name: str | None, parent_id: int | None
) -> Unit:
    """Rename or move a unit (admin); a unit cannot move below itself."""
    require_admin(actor)
    async with ctx.write() as w:
        unit = await get_unit(w.session, unit_id)
        if parent_id is not None and parent_id != unit.parent_id:
            await get_unit(w.session, parent_id)
            if parent_id in await unit_subtree(w.session, [unit_id]):
                raise Unprocessable("A unit cannot be moved below itself.", code="unit_cycle")
            unit.parent_id = parent_id
        if name is not None:
            unit.name = name
        await w.audit(actor.id, "unit.update", f"unit:{unit.id}", unit_json(unit))
        # Clients showing the unit (its members, the tree) refresh it from this event.
        await emit_unit_updated(w, **unit_json(unit))
    return unit


def check_password(ctx: Context, password: str, username: str = "") -> None:
    """Refuse a password that is too weak (422 ``weak_password``, saying why)."""
    problem = password_problem(
        password, min_length=ctx.settings.password_min_length, username=username
    )
    if problem is not None:
        raise Unprocessable(problem.message, code="weak_password", details=problem.details())


async def end_sessions(w: Write, user: User, *, reason: str) -> None:
    """Make every token of ``user`` stop working at once, on every node.

    The version in the tokens no longer matches; the ``user.sessions_ended`` event makes
    every node drop its cached principal and close the user's sockets with 4401.
    """
    user.token_version += 1
    await emit_user_sessions_ended(w, **user_json(user), reason=reason)


async def create_user(
    ctx: Context,
    actor: Principal | None,
    *,
    username: str,
    display_name: str,
    unit_id: int,
    roles: Iterable[Role],
    clearance: Confidentiality,
    password: str | None,
    is_unit_head: bool = False,
    title: str = "",
) -> User:
    """Create an account (admin, or the command line when ``actor`` is None)."""
    if actor is not None:
        require_admin(actor)
    if password is not None:
        check_password(ctx, password, username)
    password_hash = await hash_password(password) if password is not None else None
    async with ctx.write() as w:
        await get_unit(w.session, unit_id)
        taken = await w.session.execute(select(User.id).where(User.username == username))
        if taken.first() is not None:
            raise Conflict(f"The username {username!r} is taken.", code="username_taken")
        user = User(
            username=username,
            display_name=display_name,
            unit_id=unit_id,
            roles=sorted({role.value for role in roles}),
            clearance=clearance.value,
            is_unit_head=is_unit_head,
            password_hash=password_hash,
            active=True,
            created_at=w.now,
            title=title,
            token_version=0,
            must_change_password=False,
        )
        w.session.add(user)
        try:
            await w.session.flush()
        except IntegrityError as exc:
            # Another request took the name between the check and the insert.
            raise Conflict(f"The username {username!r} is taken.", code="username_taken") from exc
        await w.audit(
            actor.id if actor else None, "user.create", f"user:{user.id}", user_json(user)
        )
    return user


async def update_user(
    ctx: Context,
    actor: Principal,
    user_id: int,
    *,
    display_name: str | None = None,
    unit_id: int | None = None,
    roles: Iterable[Role] | None = None,
    clearance: Confidentiality | None = None,
    password: str | None = None,
    active: bool | None = None,
    is_unit_head: bool | None = None,
    title: str | None = None,
) -> User:
    """Change an account (admin): roles, clearance, unit, password, active, title.

    A password set here is a reset: the user must choose another at next sign-in, its
    sign-in throttles are lifted and its sessions end. Disabling ends its sessions too.
    """
    require_admin(actor)
    if user_id == actor.id and (
        active is False or (roles is not None and Role.ADMIN not in set(roles))
    ):
        # The last administrator could otherwise lock everyone out of the organisation.
        raise Unprocessable(
            "An administrator cannot disable or demote itself.", code="self_lockout"
        )
    if password is not None:
        check_password(ctx, password)
    password_hash = await hash_password(password) if password is not None else None
    async with ctx.write() as w:
        user = await w.session.get(User, user_id)
        if user is None:
            raise NotFound(f"User {user_id} does not exist.", code="user_not_found")
        if unit_id is not None:
            await get_unit(w.session, unit_id)
            user.unit_id = unit_id
        if display_name is not None:
            user.display_name = display_name
        if roles is not None:
            user.roles = sorted({role.value for role in roles})
        if clearance is not None:
            user.clearance = clearance.value
        if active is not None:
            user.active = active
        if is_unit_head is not None:
            user.is_unit_head = is_unit_head
        if title is not None:
            user.title = title
        if password_hash is not None:
            user.password_hash = password_hash
            user.must_change_password = True
            await lift_throttle(w, actor.id, user.username)
        details = user_json(user) | {"password_changed": password is not None}
        await w.audit(actor.id, "user.update", f"user:{user.id}", details)
        if active is False:
            await end_sessions(w, user, reason="disabled")
        elif password_hash is not None:
            await end_sessions(w, user, reason="password_reset")
        else:
            # The user's own clients learn of new roles, unit or clearance at once.
            await emit_user_updated(w, **user_json(user))
        # This node authenticates the user from the row again at once; other nodes when
        # the event reaches them (see ``forget_changed_users``).
        w.after_commit(lambda: ctx.principals.forget(user_id))
    return user


async def sign_out_everywhere(ctx: Context, actor: Principal, user_id: int) -> User:
    """End every session of a user at once (admin, or the user itself)."""
    if actor.id != user_id:
        require_admin(actor)
    async with ctx.write() as w:
        user = await w.session.get(User, user_id)
        if user is None:
            raise NotFound(f"User {user_id} does not exist.", code="user_not_found")
        await end_sessions(w, user, reason="signed_out")
        await w.audit(actor.id, "user.sign_out_everywhere", f"user:{user.id}", {})
        w.after_commit(lambda: ctx.principals.forget(user_id))
    return user


async def lift_sign_in_throttle(ctx: Context, actor: Principal, user_id: int) -> int:
    """Let a user sign in again at once from everywhere (admin); how many throttles went."""
    require_admin(actor)
    async with ctx.write() as w:
        user = await w.session.get(User, user_id)
        if user is None:
            raise NotFound(f"User {user_id} does not exist.", code="user_not_found")
        return await lift_throttle(w, actor.id, user.username)


def forget_changed_users(ctx: Context, events: Sequence[Event]) -> None:
    """Drop the cached principal of every user a ``user.updated`` event names (events from
    any node: this is how a change made elsewhere reaches this node's cache)."""
    for event in events:
        if event.type in (USER_UPDATED, SESSIONS_ENDED) and event.topic.startswith("user:"):
            user_id = int(event.topic[len("user:") :])
            ctx.principals.forget(user_id)
            if event.type == SESSIONS_ENDED:
                disconnect_user(ctx, user_id)


def disconnect_user(ctx: Context, user_id: int) -> None:
    """Close a user's sockets on this node with 4401 once its tokens were revoked (they no
    longer authenticate, so the sockets cannot come back with them)."""
    for connection in ctx.hub.user_connections(user_id):
        connection.close(CLOSE_AUTH, "the session was signed out")


async def unit_members(ctx: Context, actor: Principal, unit_id: int) -> Sequence[User]:
    async with ctx.read() as session:
        await get_unit(session, unit_id)
        rows = await session.execute(
            select(User).where(User.unit_id == unit_id, User.active.is_(True)).order_by(User.id)
        )
        return rows.scalars().all()


async def may_watch_unit(session: AsyncSession, actor: Principal, unit_id: int) -> bool:
    """A user follows its own unit; admins, the Standing Committee and chairs the units below."""
    if unit_id == actor.unit_id:
        return True
    if actor.is_admin:
        return True
    if not actor.has_role(Role.STANDING, Role.CHAIR):
        return False
    return await is_below(session, unit_id, actor.unit_id)


async def is_below(session: AsyncSession, unit_id: int, root_id: int) -> bool:
    """Whether ``unit_id`` is ``root_id`` or below it: a walk up its few ancestors."""
    up = select(Unit.id, Unit.parent_id).where(Unit.id == unit_id).cte("ancestors", recursive=True)
    up = up.union(select(Unit.id, Unit.parent_id).where(Unit.id == up.c.parent_id))
    found = await session.execute(select(up.c.id).where(up.c.id == root_id).limit(1))
    return found.first() is not None
