"""The demo city reads like a real one: no namesakes, whole words in titles, a session today."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from meeting.demo import DEMO_AGENDA, FILE_TITLE_MAX, demo_start, short_title
from meeting.models import Meeting
from server.demo import person_name
from server.files.models import StoredFile
from server.org.models import User
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer
from tests.server.support import small_city


def test_demo_names_have_no_namesakes() -> None:
    # The default city: 95 delegates and 126 ward staff, and room to spare.
    names = [person_name(i) for i in range(1, 1001)]
    assert len(set(names)) == len(names)


def test_titles_are_cut_between_words() -> None:
    for title, *_ in DEMO_AGENDA:
        short = short_title(title)
        assert len(short) <= FILE_TITLE_MAX
        assert title.startswith(short)
        rest = title[len(short) :]
        assert rest == "" or rest.startswith(" "), short
    assert short_title("a" * 80) == "a" * 60


def test_the_demo_session_starts_today() -> None:
    for hour, minute in ((0, 0), (9, 41), (22, 59), (23, 0), (23, 59)):
        now = datetime(2026, 11, 30, hour, minute, tzinfo=UTC)
        start = demo_start(now)
        assert start.date() == now.date() and start >= now


async def test_seeded_city_has_distinct_delegates_and_whole_word_file_names(
    server: RunningServer,
) -> None:
    await small_city(server)
    now = server.ctx.clock.now()
    async with server.ctx.read() as session:
        names = (await session.execute(select(User.display_name))).scalars().all()
        files = (await session.execute(select(StoredFile.name))).scalars().all()
        meetings = (await session.execute(select(Meeting))).scalars().all()
    assert len(set(names)) == len(names)
    titles = {title for title, *_ in DEMO_AGENDA}
    for name in files:
        stem = name.removesuffix(".pdf")
        assert any(t == stem or t.startswith(stem + " ") for t in titles), name
    assert meetings and all(m.starts_at.date() == now.date() for m in meetings)
    await server.login("delegate001", DEMO_PASSWORD)
