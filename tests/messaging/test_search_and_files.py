"""Search (diacritic-insensitive, only what the user may see) and attachment access."""

from __future__ import annotations

from typing import Any

from messaging.search import fold, query_tokens
from server.demo import DemoCity
from tests.harness import RunningServer
from tests.messaging.support import directive_body, issue, token


def test_fold_removes_vietnamese_diacritics() -> None:
    assert fold("Khẩn cấp — ĐÀ NẴNG, đường Điện Biên") == "khan cap — da nang, duong dien bien"
    assert query_tokens("  Hỏa-tốc!! ") == ["hoa", "toc"]
    assert query_tokens("\"' * OR") == ["or"]


async def search(server: RunningServer, user_token: str, q: str) -> list[dict[str, Any]]:
    async with server.http(user_token) as http:
        response = await http.get("/api/v1/search", params={"q": q})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


async def test_search_finds_only_what_the_user_may_see(
    server: RunningServer, city: DemoCity
) -> None:
    standing = await token(server, "standing")
    w1, w2, w3 = [await token(server, f"ward00{i}") for i in (1, 2, 3)]
    issued = await issue(
        server,
        standing,
        directive_body(
            city.commune_unit_ids[:2],
            title="Chỉ thị khẩn cấp về đê điều",
            body="Kiểm tra đê ở Đông Anh ngay trong đêm.",
        ),
    )
    async with server.http(w1) as http:
        await http.post(
            f"/api/v1/directives/{issued['id']}/replies",
            json={"body": "Phường báo cáo: đê an toàn, không sự cố"},
        )
        channel = next(
            c
            for c in (await http.get("/api/v1/channels")).json()["channels"]
            if c["kind"] == "unit"
        )
        await http.post(
            f"/api/v1/channels/{channel['id']}/messages",
            json={"body": "Nhắc lịch trực bão tối nay", "client_msg_id": "s1"},
        )
        gone = await http.post(
            f"/api/v1/channels/{channel['id']}/messages",
            json={"body": "Tin nhắn trực bão nhầm", "client_msg_id": "s2"},
        )
        await http.delete(f"/api/v1/channels/{channel['id']}/messages/{gone.json()['id']}")

    hits = await search(server, w1, "khan cap")
    assert [(h["kind"], h["id"]) for h in hits] == [("directive", issued["id"])]
    assert {h["kind"] for h in await search(server, w1, "de")} == {"directive", "reply"}
    assert [h["kind"] for h in await search(server, w1, "dong anh")] == ["directive"]
    assert [h["kind"] for h in await search(server, w1, "truc bao")] == ["message"]
    assert await search(server, w1, "nham") == []  # retracted
    assert await search(server, w1, "ĐÊ ĐIỀU")  # accents in the query fold too
    # ward002 receives the directive but not ward001's thread or channel.
    assert [h["kind"] for h in await search(server, w2, "de")] == ["directive"]
    assert await search(server, w2, "truc bao") == []
    assert await search(server, w3, "khan cap") == []
    sender_hits = {h["kind"] for h in await search(server, standing, "de")}
    assert sender_hits == {"directive", "reply"}
    async with server.http(w1) as http:
        empty = await http.get("/api/v1/search", params={"q": " !! "})
        assert empty.status_code == 400
        assert empty.json()["error"]["code"] == "empty_query"
        long = await http.get("/api/v1/search", params={"q": "a" * 500})
        assert long.status_code == 400


async def upload(server: RunningServer, user_token: str, text: str) -> int:
    async with server.http(user_token) as http:
        response = await http.post(
            "/api/v1/files", files={"file": ("bao-cao.txt", text.encode(), "text/plain")}
        )
    assert response.status_code == 201, response.text
    file_id: int = response.json()["id"]
    return file_id


async def test_attachments_readable_by_the_parties_only(
    server: RunningServer, city: DemoCity
) -> None:
    standing = await token(server, "standing")
    w1, w2, w3 = [await token(server, f"ward00{i}") for i in (1, 2, 3)]
    order = await upload(server, standing, "Công văn hỏa tốc số 1")
    issued = await issue(
        server, standing, directive_body(city.commune_unit_ids[:2], attachment_ids=[order])
    )
    report = await upload(server, w1, "Báo cáo của phường 001")
    async with server.http(w1) as http:
        posted = await http.post(
            f"/api/v1/directives/{issued['id']}/replies",
            json={"body": "Kèm báo cáo", "attachment_ids": [report]},
        )
        assert posted.status_code == 201
        shown = (await http.get(f"/api/v1/directives/{issued['id']}")).json()
        assert [a["id"] for a in shown["attachments"]] == [order]
    note = await upload(server, w2, "Ghi chú riêng")
    async with server.http(w2) as http:
        direct = (
            await http.post(
                "/api/v1/channels", json={"kind": "direct", "member_ids": [city.ward_user_ids[0]]}
            )
        ).json()
        sent = await http.post(
            f"/api/v1/channels/{direct['id']}/messages",
            json={"body": "gửi anh", "client_msg_id": "f1", "attachment_ids": [note]},
        )
        assert sent.status_code == 201

    async def status(user_token: str, file_id: int) -> int:
        async with server.http(user_token) as http:
            return (await http.get(f"/api/v1/files/{file_id}")).status_code

    assert [await status(t, order) for t in (w1, w2, w3)] == [200, 200, 404]
    assert [await status(t, report) for t in (standing, w2, w3)] == [200, 404, 404]
    assert [await status(t, note) for t in (w1, w3, standing)] == [200, 404, 404]
    async with server.http(w3) as http:  # cannot attach what one may not read
        refused = await http.post(
            "/api/v1/channels", json={"kind": "direct", "member_ids": [city.ward_user_ids[0]]}
        )
        response = await http.post(
            f"/api/v1/channels/{refused.json()['id']}/messages",
            json={"body": "x", "client_msg_id": "steal", "attachment_ids": [order]},
        )
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "unknown_attachment"
