"""The Python and SQL forms of each visibility rule agree (``messaging/visibility.py``).

A demo city gets directives at every confidentiality level with recipients in several
units, reply threads of each recipient unit, unit, group and direct channels (with a
member who left) and messages posted, edited and retracted. Then, for every role and
clearance, each user of the city (so every membership: sender, sender's unit, recipient,
thread unit, channel member, former member, outsider) is judged by both forms.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from sqlalchemy import select

from messaging.channels import ensure_unit_channels
from messaging.models import (
    Channel,
    ChannelKind,
    ChannelMember,
    Directive,
    DirectiveAttachment,
    DirectiveRecipient,
    DirectiveReply,
    Message,
    MessageAttachment,
    MessageState,
    ReplyAttachment,
)
from messaging.visibility import (
    channel_member_sql,
    directive_readable_sql,
    is_channel_member,
    may_read_directive,
    may_read_message,
    may_read_thread,
    message_readable_sql,
    reply_readable_sql,
)
from server.auth.principal import Principal
from server.demo import DemoCity
from server.files.models import StoredFile
from server.files.service import may_read_file
from server.org.models import Confidentiality, Role, User
from tests.harness import RunningServer

ROLE_SETS = {
    "none": frozenset(),
    "staff": frozenset({Role.STAFF.value}),
    "standing": frozenset({Role.STANDING.value}),
    "chair": frozenset({Role.CHAIR.value, Role.DELEGATE.value}),
    "admin": frozenset({Role.ADMIN.value}),
}


async def _seed(server: RunningServer, city: DemoCity) -> None:
    """Objects whose visibility differs by role, clearance and membership."""
    await ensure_unit_channels(server.ctx)
    ward_a, ward_b = city.commune_unit_ids[0], city.commune_unit_ids[1]
    async with server.ctx.write() as w:
        session = w.session
        users = {u.id: u for u in (await session.execute(select(User))).scalars().all()}
        ward_a_user, ward_b_user = city.ward_user_ids[0], city.ward_user_ids[1]
        for level in Confidentiality:
            directive = Directive(
                sender_id=city.standing_id,
                sender_unit_id=users[city.standing_id].unit_id,
                title=f"Chỉ đạo {level.value}",
                body="Nội dung",
                urgency="express",
                confidentiality=level.value,
                ack_required=True,
                issued_at=w.now,
                targets={"unit_ids": [ward_a, ward_b], "include_descendants": False},
                recipient_count=3,
                left_out=[],
            )
            session.add(directive)
            await session.flush()
            # Recipients in two wards and one delegate in a committee.
            for user_id in (ward_a_user, ward_b_user, city.delegate_ids[0]):
                session.add(
                    DirectiveRecipient(
                        directive_id=directive.id,
                        user_id=user_id,
                        unit_id=users[user_id].unit_id,
                        event_seq=1,
                        reminders_sent=0,
                    )
                )
            for author, unit in (
                (ward_a_user, ward_a),
                (ward_b_user, ward_b),
                (city.standing_id, ward_a),
            ):
                session.add(
                    DirectiveReply(
                        directive_id=directive.id,
                        unit_id=unit,
                        author_id=author,
                        body="Báo cáo",
                        attachment_ids=[],
                        created_at=w.now,
                    )
                )
        group = Channel(kind=ChannelKind.GROUP.value, name="Nhóm", created_at=w.now)
        direct = Channel(
            kind=ChannelKind.DIRECT.value,
            name="Đôi",
            direct_key=f"{city.chair_id}:{ward_a_user}",
            created_at=w.now,
        )
        session.add_all([group, direct])
        await session.flush()
        for channel, user_id, member in (
            (group, city.chair_id, True),
            (group, ward_a_user, True),
            (group, city.delegate_ids[1], False),  # left the group
            (direct, city.chair_id, True),
            (direct, ward_a_user, True),
        ):
            session.add(
                ChannelMember(
                    channel_id=channel.id,
                    user_id=user_id,
                    member=member,
                    read_seq=0,
                    joined_at=w.now,
                )
            )
        # A read position of a unit channel is not a membership.
        unit_b_channel = (
            await session.execute(select(Channel).where(Channel.unit_id == ward_b))
        ).scalar_one()
        session.add(
            ChannelMember(
                channel_id=unit_b_channel.id,
                user_id=ward_a_user,
                member=False,
                read_seq=0,
                joined_at=w.now,
            )
        )
        channels = (await session.execute(select(Channel))).scalars().all()
        seq = itertools.count(1)
        for channel in channels:
            for state in MessageState:
                session.add(
                    Message(
                        channel_id=channel.id,
                        seq=next(seq),
                        author_id=city.chair_id,
                        client_msg_id=f"{channel.id}-{state.value}",
                        body="" if state is MessageState.RETRACTED else "Tin",
                        attachment_ids=[],
                        state=state.value,
                        version=1,
                        created_at=w.now,
                    )
                )
        await session.flush()
        # A file attached to each directive, each reply and the messages of four channels,
        # all uploaded by the secretary.
        attaching: list[Any] = [
            *(await session.execute(select(Directive))).scalars().all(),
            *(await session.execute(select(DirectiveReply))).scalars().all(),
            *(
                await session.execute(
                    select(Message)
                    .join(Channel, Channel.id == Message.channel_id)
                    .where(
                        (Channel.kind != ChannelKind.UNIT.value)
                        | Channel.unit_id.in_([ward_a, ward_b])
                    )
                )
            )
            .scalars()
            .all(),
        ]
        for n, thing in enumerate(attaching):
            f = StoredFile(
                sha256=f"{n:064x}",
                size=1,
                content_type="application/pdf",
                name=f"{n}.pdf",
                uploader_id=city.secretary_id,
                created_at=w.now,
            )
            session.add(f)
            await session.flush()
            if isinstance(thing, Directive):
                session.add(DirectiveAttachment(directive_id=thing.id, file_id=f.id))
            elif isinstance(thing, DirectiveReply):
                session.add(ReplyAttachment(reply_id=thing.id, file_id=f.id))
            else:
                session.add(MessageAttachment(message_id=thing.id, file_id=f.id))


async def _visible_ids(server: RunningServer, principal: Principal) -> dict[str, set[int]]:
    """What the SQL forms let ``principal`` see."""
    async with server.ctx.read() as session:

        async def ids(stmt: Any) -> set[int]:
            return {int(i) for i in (await session.execute(stmt)).scalars().all()}

        return {
            "directive": await ids(select(Directive.id).where(directive_readable_sql(principal))),
            "reply": await ids(select(DirectiveReply.id).where(reply_readable_sql(principal))),
            "channel": await ids(select(Channel.id).where(channel_member_sql(principal))),
            "message": await ids(select(Message.id).where(message_readable_sql(principal))),
        }


@pytest.mark.parametrize("clearance", list(Confidentiality))
@pytest.mark.parametrize("roles", list(ROLE_SETS))
async def test_python_and_sql_forms_agree(
    server: RunningServer, city: DemoCity, roles: str, clearance: Confidentiality
) -> None:
    await _seed(server, city)
    async with server.ctx.read() as session:
        users = (await session.execute(select(User).order_by(User.id))).scalars().all()
        directives = (await session.execute(select(Directive))).scalars().all()
        recipients = {
            (r.directive_id, r.user_id): r
            for r in (await session.execute(select(DirectiveRecipient))).scalars().all()
        }
        replies = (await session.execute(select(DirectiveReply))).scalars().all()
        channels = {c.id: c for c in (await session.execute(select(Channel))).scalars().all()}
        members = {
            (m.channel_id, m.user_id): m
            for m in (await session.execute(select(ChannelMember))).scalars().all()
        }
        messages = (await session.execute(select(Message))).scalars().all()
        attached = {
            int(f): (kind, int(thing))
            for kind, table, column in (
                ("directive", DirectiveAttachment, DirectiveAttachment.directive_id),
                ("reply", ReplyAttachment, ReplyAttachment.reply_id),
                ("message", MessageAttachment, MessageAttachment.message_id),
            )
            for f, thing in (await session.execute(select(table.file_id, column))).all()
        }
    by_id = {d.id: d for d in directives}
    seen_any = dict.fromkeys(("directive", "reply", "channel", "message", "file"), False)
    for user in users:
        principal = Principal(
            id=user.id,
            username=user.username,
            display_name=user.display_name,
            unit_id=user.unit_id,
            roles=ROLE_SETS[roles],
            clearance=clearance,
        )
        python = {
            "directive": {
                d.id
                for d in directives
                if may_read_directive(principal, d, recipients.get((d.id, user.id)))
            },
            "reply": {
                r.id
                for r in replies
                if may_read_thread(
                    principal,
                    by_id[r.directive_id],
                    recipients.get((r.directive_id, user.id)),
                    r.unit_id,
                )
            },
            "channel": {
                c.id
                for c in channels.values()
                if is_channel_member(principal, c, members.get((c.id, user.id)))
            },
            "message": {
                m.id
                for m in messages
                if may_read_message(
                    principal, channels[m.channel_id], members.get((m.channel_id, user.id)), m
                )
            },
        }
        # A file: readable by its uploader and by whoever may read what attaches it
        # (``readable_file``'s statement, built once per kind of reader).
        python["file"] = {
            file_id
            for file_id, (kind, thing_id) in attached.items()
            if user.id == city.secretary_id or thing_id in python[kind]
        }
        sql = await _visible_ids(server, principal)
        sql["file"] = {f for f in attached if await may_read_file(server.ctx, principal, f)}
        assert python == sql, (user.username, roles, clearance)
        for rule, found in python.items():
            seen_any[rule] = seen_any[rule] or bool(found)
    # Every rule lets someone see something, so agreement is not agreement on nothing.
    assert all(seen_any.values()), seen_any


async def test_a_standing_colleague_finds_what_it_may_open(
    server: RunningServer, city: DemoCity
) -> None:
    """Search used its own copy of the directive rule (sender or recipient only): a cleared
    Standing Committee colleague of the sender could open a directive but never find it."""
    from server.org.service import create_user
    from tests.conftest import DEMO_PASSWORD
    from tests.messaging.support import directive_body, issue, token

    async with server.ctx.read() as session:
        standing = await session.get(User, city.standing_id)
        assert standing is not None
        root_unit = standing.unit_id
    await create_user(
        server.ctx,
        None,
        username="standing2",
        display_name="Lê Văn Phó",
        unit_id=root_unit,
        roles=[Role.STANDING],
        clearance=Confidentiality.SECRET,
        password=DEMO_PASSWORD,
    )
    sent = await issue(
        server,
        await token(server, "standing"),
        directive_body([city.commune_unit_ids[0]], title="Phòng chống lụt bão"),
    )
    colleague = await token(server, "standing2")
    async with server.http(colleague) as http:
        opened = await http.get(f"/api/v1/directives/{sent['id']}")
        found = await http.get("/api/v1/search", params={"q": "lut bao"})
    assert opened.status_code == 200, opened.text
    assert found.status_code == 200, found.text
    hits = [(hit["kind"], hit["id"]) for hit in found.json()["results"]]
    assert hits == [("directive", sent["id"])]
