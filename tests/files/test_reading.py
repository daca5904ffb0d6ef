"""Reading files: page images with caching headers, stamped copies, who may read what."""

from __future__ import annotations

import asyncio
import io
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from pypdf import PdfReader
from sqlalchemy import Column, ColumnElement, Integer, MetaData, Table, event, exists, select

from server.audit import AuditRecord
from server.auth.principal import Principal
from server.clock import ManualClock
from server.errors import Unprocessable
from server.features import Feature
from server.files.feature import feature as files_feature
from server.files.models import StoredFile
from server.files.runtime import PageGrants, runtime
from server.files.service import may_read_file, require_attachable
from server.org.models import User
from tests.conftest import MakeServer
from tests.files import samples
from tests.files.conftest import seeded_token, stored, upload
from tests.harness import RunningServer


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def _upload_pdf(client: httpx.AsyncClient, pages: int = 3) -> int:
    response = await upload(client, samples.text_pdf(pages))
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def test_page_images_have_etags_and_answer_304(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    async with server.http(tokens["delegate001"]) as client:
        file_id = await _upload_pdf(client)
        first = await client.get(f"/api/v1/files/{file_id}/pages/2.png?width=500")
        assert first.status_code == 200
        assert png_size(first.content)[0] == 500
        etag = first.headers["etag"]
        assert "private" in first.headers["cache-control"]
        again = await client.get(
            f"/api/v1/files/{file_id}/pages/2.png?width=500", headers={"If-None-Match": etag}
        )
        assert again.status_code == 304
        assert again.content == b""
        other_width = await client.get(
            f"/api/v1/files/{file_id}/pages/2.png?width=300", headers={"If-None-Match": etag}
        )
        assert other_width.status_code == 200
        assert other_width.headers["etag"] != etag
        assert png_size(other_width.content)[0] == 300
        default = await client.get(f"/api/v1/files/{file_id}/pages/1.png")
        assert png_size(default.content)[0] == server.settings.render_default_width
        # A second fetch comes from the disk cache, byte for byte.
        cached = await client.get(f"/api/v1/files/{file_id}/pages/2.png?width=500")
        assert cached.content == first.content
    await runtime(server.ctx).settled()


async def test_bad_page_requests(server: RunningServer, tokens: dict[str, str]) -> None:
    async with server.http(tokens["delegate001"]) as client:
        file_id = await _upload_pdf(client, pages=2)
        png = await upload(client, samples.png_bytes(), name="anh.png", content_type="image/png")
        assert png.status_code == 201
        assert png.json()["pages"] is None
        cases = [
            (f"/api/v1/files/{file_id}/pages/0.png", 404, "page_not_found"),
            (f"/api/v1/files/{file_id}/pages/3.png", 404, "page_not_found"),
            (f"/api/v1/files/{file_id}/pages/x.png", 400, "invalid_id"),
            (f"/api/v1/files/{file_id}/pages/1.png?width=abc", 400, "invalid_width"),
            (f"/api/v1/files/{file_id}/pages/1.png?width=5", 400, "invalid_width"),
            (f"/api/v1/files/{file_id}/pages/1.png?width=99999", 400, "invalid_width"),
            (f"/api/v1/files/{png.json()['id']}/pages/1.png", 404, "page_not_found"),
            ("/api/v1/files/999999/pages/1.png", 404, "file_not_found"),
        ]
        for path, status, code in cases:
            response = await client.get(path)
            assert response.status_code == status, (path, response.text)
            assert response.json()["error"]["code"] == code, (path, response.text)
    await runtime(server.ctx).settled()


async def test_stamped_copy_names_the_reader_in_text_and_metadata(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    data = samples.text_pdf(3, samples.VIETNAMESE)
    async with server.http(tokens["ward001"]) as client:
        me = (await client.get("/api/v1/me")).json()
        response = await upload(client, data, name="Công văn khẩn.pdf")
        file_id = response.json()["id"]
        copy = await client.get(f"/api/v1/files/{file_id}")
    assert copy.status_code == 200
    assert copy.headers["content-type"] == "application/pdf"
    assert "no-store" in copy.headers["cache-control"]
    assert (
        "filename*=UTF-8''C%C3%B4ng%20v%C4%83n%20kh%E1%BA%A9n.pdf"
        in copy.headers["content-disposition"]
    )
    assert copy.content != data
    reader = PdfReader(io.BytesIO(copy.content))
    name, unit = me["display_name"], me["unit"]["name"]
    assert any(ch in name + unit for ch in "ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ")
    for page in reader.pages:
        text = page.extract_text()
        assert name in text
        assert unit in text
        assert samples.VIETNAMESE in text  # the document itself is intact
    metadata = reader.metadata
    assert metadata is not None
    assert metadata["/DienHongReader"] == name
    assert metadata["/DienHongReaderUnit"] == unit
    assert metadata["/DienHongFileId"] == str(file_id)
    async with server.ctx.read() as session:
        record = (
            await session.execute(
                select(AuditRecord)
                .where(AuditRecord.action == "file.download")
                .order_by(AuditRecord.seq.desc())
                .limit(1)
            )
        ).scalar_one()
    assert record.subject == f"file:{file_id}"
    assert record.details["reader"] == name
    assert record.actor_id == me["id"]
    # The stamped copy is gone from the temporary directory once sent.
    assert not any(runtime(server.ctx).store.tmp.iterdir())
    await runtime(server.ctx).settled()


async def test_other_files_are_served_as_uploaded(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    cases = [
        (samples.png_bytes(), "anh.png", "image/png", "image/png"),
        (
            samples.docx_bytes(),
            "bao-cao.docx",
            "application/octet-stream",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        (
            "Ghi chú cuộc họp\nNội dung".encode(),
            "ghi-chu.txt",
            "text/plain; charset=utf-8",
            "text/plain",
        ),
        (samples.text_pdf(1), "khong-ro.bin", "application/octet-stream", "application/pdf"),
    ]
    async with server.http(tokens["delegate001"]) as client:
        for data, name, declared, stored_type in cases:
            response = await upload(client, data, name=name, content_type=declared)
            assert response.status_code == 201, (name, response.text)
            assert response.json()["content_type"] == stored_type
            if stored_type == "application/pdf":
                continue
            assert response.json()["pages"] is None
            got = await client.get(f"/api/v1/files/{response.json()['id']}")
            assert got.status_code == 200
            assert got.content == data
            assert got.headers["content-type"].startswith(stored_type)
            assert got.headers["x-content-type-options"] == "nosniff"
    await runtime(server.ctx).settled()


async def test_only_readers_see_a_file_and_others_get_404(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    async with server.http(tokens["delegate001"]) as owner:
        file_id = await _upload_pdf(owner)
        assert (await owner.get(f"/api/v1/files/{file_id}/meta")).status_code == 200
    before = await stored(server)
    async with server.http(tokens["delegate002"]) as stranger:
        for path in (
            f"/api/v1/files/{file_id}",
            f"/api/v1/files/{file_id}/meta",
            f"/api/v1/files/{file_id}/pages/1.png",
        ):
            response = await stranger.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "file_not_found"
            # Exactly what an id that does not exist gets: ids leak nothing.
            missing = await stranger.get(path.replace(str(file_id), "987654"))
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == "file_not_found"
    async with server.http() as anonymous:
        assert (await anonymous.get(f"/api/v1/files/{file_id}")).status_code == 401
    after = await stored(server)
    assert after.rows == before.rows
    await runtime(server.ctx).settled()


# A feature's own table of who may read which file, as an agenda or a message is.
SHARES = Table("test_shares", MetaData(), Column("user_id", Integer), Column("file_id", Integer))


def shared_with(principal: Principal, file_id: Any) -> ColumnElement[bool]:
    """The feature's file access rule: the (user, file) pairs in ``test_shares``."""
    return exists().where(SHARES.c.user_id == principal.id, SHARES.c.file_id == file_id)


async def sharing(server: RunningServer) -> Callable[..., Awaitable[None]]:
    """Creates ``test_shares``; returns ``share(user_id, file_id, shared=True)``."""
    async with server.ctx.db.write_engine.begin() as connection:
        await connection.run_sync(SHARES.create)

    async def share(user_id: int, file_id: int, shared: bool = True) -> None:
        async with server.ctx.db.write_engine.begin() as connection:
            if shared:
                await connection.execute(SHARES.insert().values(user_id=user_id, file_id=file_id))
            else:
                await connection.execute(SHARES.delete())

    return share


def counting_checks(server: RunningServer) -> list[str]:
    """Every query that reads ``test_shares`` (an access check), from now on."""
    checks: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "test_shares" in statement:
            checks.append(statement)

    event.listen(server.ctx.db.read_engine.sync_engine, "before_cursor_execute", seen)
    return checks


async def test_features_grant_reading_through_file_access_rules(make_server: MakeServer) -> None:
    agenda = Feature(name="agenda-test", file_access_rules=[shared_with])
    server = await make_server(features=[files_feature(), agenda])
    share = await sharing(server)
    owner_token = await seeded_token(server, "delegate001")
    from tests.conftest import DEMO_PASSWORD

    reader_token = await server.login("delegate002", DEMO_PASSWORD)
    async with server.http(owner_token) as owner, server.http(reader_token) as reader:
        file_id = await _upload_pdf(owner, pages=1)
        reader_id = (await reader.get("/api/v1/me")).json()["id"]
        assert (await reader.get(f"/api/v1/files/{file_id}/meta")).status_code == 404
        await share(reader_id, file_id)
        assert (await reader.get(f"/api/v1/files/{file_id}/meta")).status_code == 200
        page = await reader.get(f"/api/v1/files/{file_id}/pages/1.png?width=200")
        assert page.status_code == 200
        copy = await reader.get(f"/api/v1/files/{file_id}")
        assert copy.status_code == 200
        me = (await reader.get("/api/v1/me")).json()
        assert me["display_name"] in PdfReader(io.BytesIO(copy.content)).pages[0].extract_text()
        # Someone else of the same kind (roles, clearance) is judged by their own shares.
        other_token = await server.login("delegate003", DEMO_PASSWORD)
        async with server.http(other_token) as other:
            assert (await other.get(f"/api/v1/files/{file_id}/meta")).status_code == 404
    await runtime(server.ctx).settled()


async def test_readers_asking_at_once_share_one_query_and_get_their_own_answers(
    make_server: MakeServer,
) -> None:
    """A room of tablets opening a document: the checks asked together are one query (for
    each kind of reader), and each reader still gets the answer of their own rules."""
    agenda = Feature(name="agenda-test", file_access_rules=[shared_with])
    server = await make_server(features=[files_feature(), agenda])
    share = await sharing(server)
    async with server.http(await seeded_token(server, "delegate001")) as owner:
        file_id = await _upload_pdf(owner, pages=1)
    names = ["delegate001", "delegate002", "delegate003", "delegate004", "delegate005"]
    async with server.ctx.read() as session:
        users = {
            u.username: u
            for u in (await session.scalars(select(User).where(User.username.in_(names)))).all()
        }
    readers = [Principal.of(users[name]) for name in names]
    await share(users["delegate002"].id, file_id)
    await share(users["delegate004"].id, file_id)
    checks = counting_checks(server)
    allowed = await asyncio.gather(*(may_read_file(server.ctx, r, file_id) for r in readers))
    # The uploader, two readers it is shared with, two it is not.
    assert allowed == [True, True, False, True, False]
    assert len(checks) == 1
    missing = await asyncio.gather(*(may_read_file(server.ctx, r, 987654) for r in readers))
    assert missing == [False] * len(readers)
    await runtime(server.ctx).settled()


async def test_a_page_grant_is_kept_for_its_time_only(make_server: MakeServer) -> None:
    clock = ManualClock()
    agenda = Feature(name="agenda-test", file_access_rules=[shared_with])
    server = await make_server(
        clock=clock, features=[files_feature(), agenda], page_grant_cache_secs=5
    )
    share = await sharing(server)
    owner_token = await seeded_token(server, "delegate001")
    from tests.conftest import DEMO_PASSWORD

    reader_token = await server.login("delegate002", DEMO_PASSWORD)
    async with server.http(owner_token) as owner, server.http(reader_token) as reader:
        checks = counting_checks(server)
        file_id = await _upload_pdf(owner, pages=2)
        reader_id = (await reader.get("/api/v1/me")).json()["id"]
        page = f"/api/v1/files/{file_id}/pages/1.png?width=200"
        # A refusal is never kept: the grant that follows counts at once.
        assert (await reader.get(page)).status_code == 404
        await share(reader_id, file_id)
        assert (await reader.get(page)).status_code == 200
        checked = len(checks)
        assert checked == 2
        # A burst on the presented page: no access check after the first.
        for number in (1, 2, 1):
            answer = await reader.get(f"/api/v1/files/{file_id}/pages/{number}.png?width=200")
            assert answer.status_code == 200
        assert len(checks) == checked
        # Access taken away: pages for at most the grant's time; the rest at once.
        await share(reader_id, file_id, shared=False)
        assert (await reader.get(f"/api/v1/files/{file_id}/meta")).status_code == 404
        assert (await reader.get(f"/api/v1/files/{file_id}")).status_code == 404
        assert (await reader.get(page)).status_code == 200
        await clock.advance(5)
        refused = await reader.get(page)
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "file_not_found"
    # Grants are per user and per file, and bounded.
    grants = runtime(server.ctx).page_grants
    assert grants.get(reader_id, file_id) is None
    assert len(grants) <= server.settings.page_grant_cache_size
    await runtime(server.ctx).settled()


async def test_page_grants_are_bounded_and_can_be_turned_off() -> None:
    clock = ManualClock()
    grants = PageGrants(clock, ttl_secs=5, max_entries=2)
    files = [
        StoredFile(id=n, sha256="0" * 64, size=1, content_type="application/pdf") for n in (1, 2, 3)
    ]
    for f in files:
        grants.put(7, f)
    assert len(grants) == 2
    assert grants.get(7, 1) is None  # kept longest: gone first
    assert grants.get(7, 3) is files[2]
    assert grants.get(8, 3) is None
    off = PageGrants(clock, ttl_secs=0, max_entries=2)
    off.put(7, files[0])
    assert off.get(7, 1) is None and len(off) == 0


async def test_require_attachable(server: RunningServer, tokens: dict[str, str]) -> None:
    async with server.http(tokens["delegate001"]) as owner:
        mine = [await _upload_pdf(owner, pages=1) for _ in range(2)]
    async with server.http(tokens["delegate002"]) as other:
        theirs = await _upload_pdf(other, pages=1)
        other_id = (await other.get("/api/v1/me")).json()["id"]
    async with server.http(tokens["delegate001"]) as owner:
        me = (await owner.get("/api/v1/me")).json()
    ctx = server.ctx
    async with ctx.read() as session:
        from server.org.models import User

        user = await session.get(User, me["id"])
        assert user is not None
        principal = Principal.of(user)
        got = await require_attachable(ctx, session, principal, [mine[1], mine[0]])
        assert [f.id for f in got] == [mine[1], mine[0]]
        assert await require_attachable(ctx, session, principal, []) == []
        for ids, offending in (
            ([mine[0], 424242], 424242),
            ([theirs], theirs),
            ([mine[0], mine[1], mine[0]], mine[0]),
        ):
            try:
                await require_attachable(ctx, session, principal, ids)
            except Unprocessable as exc:
                assert exc.code == "unknown_attachment"
                assert str(offending) in exc.message
                assert exc.details["file_id"] == offending
            else:
                raise AssertionError(f"{ids} were accepted")
    assert await may_read_file(ctx, principal, mine[0])
    assert not await may_read_file(ctx, principal, theirs)
    assert not await may_read_file(ctx, principal, 424242)
    assert other_id != principal.id
    await runtime(server.ctx).settled()


async def test_many_tablets_asking_for_one_new_page_cause_one_render(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    import asyncio

    rt = runtime(server.ctx)
    async with server.http(tokens["delegate001"]) as client:
        file_id = await _upload_pdf(client, pages=2)
        await rt.settled()
        done = rt.renders_done
        path = f"/api/v1/files/{file_id}/pages/2.png?width=777"
        answers = await asyncio.gather(*(client.get(path) for _ in range(20)))
    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.content for answer in answers}) == 1
    assert rt.renders_done == done + 1


async def test_missing_content_is_a_clear_404(
    server: RunningServer, tokens: dict[str, str]
) -> None:
    rt = runtime(server.ctx)
    async with server.http(tokens["delegate001"]) as client:
        response = await upload(client, samples.text_pdf(2, "Bản dự thảo"))
        await rt.settled()
        rt.store.blob_path(response.json()["sha256"]).unlink()
        file_id = response.json()["id"]
        for path in (f"/api/v1/files/{file_id}", f"/api/v1/files/{file_id}/pages/2.png?width=99"):
            missing = await client.get(path)
            assert missing.status_code == 404, path
            assert missing.json()["error"]["code"] == "content_missing"
