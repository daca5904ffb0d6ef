"""Search results carry what the chat page shows: kind, time, author, a snippet around
the first match with the matched words' offsets; text of attached PDFs is found too, as
``attachment`` results saying where the reader sees the file."""

from __future__ import annotations

import asyncio
from typing import Any

from meeting.demo import document_pdf
from messaging.search import fold, snippet
from server.demo import DemoCity
from server.files.models import StoredFile
from tests.harness import RunningServer, eventually
from tests.messaging.support import directive_body, issue, token


async def _search(server: RunningServer, user_token: str, q: str) -> list[dict[str, Any]]:
    async with server.http(user_token) as http:
        response = await http.get("/api/v1/search", params={"q": q})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def _highlighted(result: dict[str, Any]) -> list[str]:
    return [result["snippet"][start:end] for start, end in result["highlights"]]


async def _upload_pdf(server: RunningServer, user_token: str, title: str) -> int:
    data, _pages = await asyncio.to_thread(document_pdf, title, 1)
    async with server.http(user_token) as http:
        response = await http.post(
            "/api/v1/files", files={"file": ("phuong-an.pdf", data, "application/pdf")}
        )
    assert response.status_code == 201, response.text
    file_id: int = response.json()["id"]

    async def text_read() -> bool:
        async with server.ctx.read() as session:
            stored = await session.get(StoredFile, file_id)
            return stored is not None and not stored.text_pending

    # The text is read after the upload is answered: these tests search it once read
    # (tests/files/test_text_later.py covers a file attached before its text is read).
    await eventually(text_read, "the text of the upload read")
    return file_id


def test_snippet_is_cut_around_the_first_match_with_offsets_of_matched_words() -> None:
    words = " ".join(f"đoạn{n}" for n in range(60))
    text = f"{words} Phương án ỨNG PHÓ bão số 3, ứng phó kịp thời. {words}"
    cut, highlights = snippet(text, ["ung", "pho"], width=80)
    assert len(cut) <= 80 and cut.index("ỨNG") < 30
    assert [cut[s:e] for s, e in highlights] == ["ỨNG", "PHÓ", "ứng", "phó"]
    # Prefixes match whole words; a token inside a word does not.
    cut, highlights = snippet("Khẩn cấp: ứng cứu, bỏ túng", ["ung"])
    assert [cut[s:e] for s, e in highlights] == ["ứng"]
    cut, highlights = snippet("Đà Nẵng", ["da"])
    assert [cut[s:e] for s, e in highlights] == ["Đà"]


async def test_results_carry_kind_time_author_snippet_and_highlights(
    server: RunningServer, city: DemoCity
) -> None:
    standing = await token(server, "standing")
    ward = await token(server, "ward001")
    sent = await issue(
        server,
        standing,
        directive_body(
            city.commune_unit_ids[:1],
            title="Chỉ đạo ứng phó bão",
            body="Các phường tổ chức sơ tán và ứng phó ngay trong đêm.",
        ),
    )
    results = await _search(server, ward, "ung pho")
    assert [(r["kind"], r["id"]) for r in results] == [("directive", sent["id"])]
    found = results[0]
    assert found["author_name"] == "Phùng Thị Hồng"
    assert found["directive_id"] == sent["id"] and found["at"].endswith("+00:00")
    assert [fold(w) for w in _highlighted(found)] == ["ung", "pho", "ung", "pho"]


async def test_text_of_attached_pdfs_is_searched_for_those_who_may_see_it(
    server: RunningServer, city: DemoCity
) -> None:
    standing = await token(server, "standing")
    w1, w2 = await token(server, "ward001"), await token(server, "ward002")
    in_directive = await _upload_pdf(server, standing, "Phương án phòng chống lụt bão")
    sent = await issue(
        server, standing, directive_body(city.commune_unit_ids[:1], attachment_ids=[in_directive])
    )
    in_message = await _upload_pdf(server, w1, "Biên bản kiểm tra đê điều")
    async with server.http(w1) as http:
        direct = (
            await http.post(
                "/api/v1/channels", json={"kind": "direct", "member_ids": [city.ward_user_ids[2]]}
            )
        ).json()
        posted = await http.post(
            f"/api/v1/channels/{direct['id']}/messages",
            json={
                "body": "Gửi anh biên bản",
                "client_msg_id": "bb",
                "attachment_ids": [in_message],
            },
        )
        assert posted.status_code == 201, posted.text
    hits = [r for r in await _search(server, w1, "lut bao") if r["kind"] == "attachment"]
    assert [(h["file_id"], h["name"], h["directive_id"]) for h in hits] == [
        (in_directive, "phuong-an.pdf", sent["id"])
    ]
    assert hits[0]["author_name"] == "Phùng Thị Hồng"
    assert [fold(w) for w in _highlighted(hits[0])][:2] == ["lut", "bao"]
    hits = [r for r in await _search(server, w1, "de dieu") if r["kind"] == "attachment"]
    assert [(h["file_id"], h["channel_id"]) for h in hits] == [(in_message, direct["id"])]
    # Someone who may see neither place finds neither file.
    assert [r for r in await _search(server, w2, "lut bao") if r["kind"] == "attachment"] == []
    assert [r for r in await _search(server, w2, "de dieu") if r["kind"] == "attachment"] == []


async def test_attachments_of_an_earlier_release_are_made_searchable_at_start(
    server: RunningServer, city: DemoCity
) -> None:
    from sqlalchemy import delete

    from messaging.attachments import index_earlier_attachments
    from messaging.models import SearchDocument, SearchKind

    standing = await token(server, "standing")
    file_id = await _upload_pdf(server, standing, "Kế hoạch tiêm chủng")
    await issue(
        server, standing, directive_body(city.commune_unit_ids[:1], attachment_ids=[file_id])
    )
    # As stored by a release that did not index attachments.
    async with server.ctx.write() as w:
        await w.session.execute(
            delete(SearchDocument).where(SearchDocument.kind == SearchKind.ATTACHMENT.value)
        )
    ward = await token(server, "ward001")
    assert [r for r in await _search(server, ward, "tiem chung") if r["kind"] == "attachment"] == []
    assert await index_earlier_attachments(server.ctx) == 1
    assert await index_earlier_attachments(server.ctx) == 0
    assert [
        r["file_id"] for r in await _search(server, ward, "tiem chung") if r["kind"] == "attachment"
    ] == [file_id]
