"""``receipts.csv``: the receipts of an instruction as a spreadsheet opens them.

The JSON at ``GET /api/v1/directives/{id}/receipts`` stays the form for programs (UTC, state
keys); this file is for people: UTF-8 with a byte order mark (so a spreadsheet does not
garble "Phường"), Vietnamese headers and states, times in the city's time zone
(``DIENHONG_CITY_TIMEZONE``) written ``YYYY-MM-DD HH:MM:SS`` so spreadsheets read them as
dates, and every text cell that a spreadsheet would run as a formula made inert.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select

from messaging.receipts import receipts_report
from server.auth.principal import Principal
from server.context import Context
from server.org.models import User
from server.spreadsheet import inert

BOM = "\ufeff"
STATE_NAMES = {
    "pending": "Chưa nhận",
    "delivered": "Đã nhận",
    "read": "Đã đọc",
    "acknowledged": "Đã xác nhận",
}
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# Users per IN (...) list.
CHUNK = 500


def city_zone(name: str) -> ZoneInfo:
    """The city's time zone; a name the time zone database does not know is an error."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"DIENHONG_CITY_TIMEZONE: unknown time zone {name!r}") from exc


def local_time(moment: datetime | None, zone: ZoneInfo) -> str:
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone).strftime(TIME_FORMAT)


def header(zone_name: str) -> list[str]:
    times = f"giờ {zone_name}"
    return [
        "Mã chỉ đạo",
        "Mã đơn vị",
        "Đơn vị",
        "Mã người nhận",
        "Tên đăng nhập",
        "Họ tên",
        "Trạng thái",
        "Quá hạn",
        f"Nhận lúc ({times})",
        f"Đọc lúc ({times})",
        f"Xác nhận lúc ({times})",
        "Ghi chú xác nhận",
        "Số lần nhắc",
    ]


def rows_of(
    directive_id: int,
    report: dict[str, Any],
    people: dict[int, tuple[str, str]],
    zone: ZoneInfo,
    overdue: bool,
) -> Iterable[list[Any]]:
    units = {u["unit_id"]: u["name"] for u in report["units"]}
    for entry in report["users"]:
        username, display = people.get(entry["user_id"], ("", ""))
        late = overdue and entry["acknowledged_at"] is None
        yield [
            directive_id,
            entry["unit_id"],
            inert(units.get(entry["unit_id"], "")),
            entry["user_id"],
            inert(username),
            inert(display),
            STATE_NAMES.get(entry["state"], inert(entry["state"])),
            "Có" if late else "Không",
            local_time(entry["delivered_at"], zone),
            local_time(entry["read_at"], zone),
            local_time(entry["acknowledged_at"], zone),
            inert(entry["note"]),
            entry.get("reminders_sent", 0),
        ]


async def _people(ctx: Context, user_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    people: dict[int, tuple[str, str]] = {}
    async with ctx.read() as session:
        for start in range(0, len(user_ids), CHUNK):
            rows = await session.execute(
                select(User.id, User.username, User.display_name).where(
                    User.id.in_(user_ids[start : start + CHUNK])
                )
            )
            people.update({uid: (name, display) for uid, name, display in rows.all()})
    return people


async def receipts_csv(ctx: Context, actor: Principal, directive_id: int) -> bytes:
    """The receipts as a spreadsheet file, one line per recipient (sender side only)."""
    report = await receipts_report(ctx, actor, directive_id)
    zone_name = ctx.settings.city_timezone
    zone = city_zone(zone_name)
    people = await _people(ctx, [u["user_id"] for u in report["users"]])
    overdue = report["summary"].get("overdue", 0) > 0
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header(zone_name))
    writer.writerows(rows_of(directive_id, report, people, zone, overdue))
    return (BOM + out.getvalue()).encode("utf-8")
