"""Administration endpoints: account search and paging, bulk import, the audit viewer."""

from __future__ import annotations

import csv
import io

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select

from server.audit import AuditRecord
from server.demo import DemoCity
from server.org.audit_log import _csv_line
from server.org.models import Unit, User
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer
from tests.server.support import audit_actions

HEADER = "type,username,display_name,title,unit,parent,unit_kind,roles,clearance,password\n"


INITIAL_PASSWORD = "Tre-xanh-khoi-dau"


def accounts_csv(count: int, *, bad_rows: dict[int, str] | None = None) -> bytes:
    """A new ward and ``count`` staff accounts in it, all with one initial password (to be
    changed at first sign-in); ``bad_rows`` replaces some lines."""
    lines = [HEADER, "unit,,,,Phường Thử Nghiệm,#1,ward,,,\n"]
    for i in range(1, count + 1):
        line = (
            f"user,import{i:03d},Cán bộ {i:03d},Chuyên viên,Phường Thử Nghiệm,,,"
            f"staff,none,{INITIAL_PASSWORD}\n"
        )
        lines.append((bad_rows or {}).get(i, line))
    return "".join(lines).encode()


async def counts(server: RunningServer) -> tuple[int, int, int]:
    async with server.ctx.read() as session:
        users = (await session.execute(select(func.count()).select_from(User))).scalar_one()
        units = (await session.execute(select(func.count()).select_from(Unit))).scalar_one()
        audit = (await session.execute(select(func.count()).select_from(AuditRecord))).scalar_one()
    return users, units, audit


async def test_import_dry_run_lists_every_problem_and_writes_nothing(
    server: RunningServer,
    city: DemoCity,
) -> None:
    admin = await server.login("admin", DEMO_PASSWORD)
    bad = accounts_csv(
        20,
        bad_rows={
            4: "user,ward001,Trùng tên,,Phường Thử Nghiệm,,,staff,none,\n",
            9: "user,import009,Cán bộ 9,,Không Có Phường,,,mayor,none,123456\n",
        },
    )
    before = await counts(server)
    async with server.http(admin) as client:
        dry = await client.post("/api/v1/admin/import?dry_run=true", content=bad)
        assert dry.status_code == 200, dry.text
        body = dry.json()
        assert body["dry_run"] is True and body["rows"] == 21
        problems = {(p["row"], p["field"], p["code"]) for p in body["problems"]}
        assert problems == {
            (6, "username", "username_taken"),
            (11, "unit", "unit_name_unknown"),
            (11, "roles", "role_unknown"),
            (11, "password", "password_too_short"),
        }
        # Each problem carries what the pages need to say it in the reader's language.
        by_code = {p["code"]: p for p in body["problems"]}
        assert by_code["username_taken"]["params"] == {"username": "ward001"}
        assert by_code["unit_name_unknown"]["params"] == {"name": "Không Có Phường"}
        assert by_code["password_too_short"]["params"]["min"] >= 8
        assert await counts(server) == before
        # The real import of the same file is refused whole.
        refused = await client.post("/api/v1/admin/import", content=bad)
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "import_invalid"
        assert len(refused.json()["error"]["details"]) == 4
        assert await counts(server) == before
        done = await client.post("/api/v1/admin/import", content=accounts_csv(20))
        assert done.status_code == 201, done.text
        assert done.json()["users"] == 20 and done.json()["units"] == 1
    users, units, _ = await counts(server)
    assert (users, units) == (before[0] + 20, before[1] + 1)
    actions = await audit_actions(server)
    assert sum(1 for a, s in actions if a == "user.create" and s.startswith("user:")) >= 20
    assert ("org.import", "org") in actions
    async with server.http() as client:
        signed = await client.post(
            "/api/v1/auth/login", json={"username": "import007", "password": INITIAL_PASSWORD}
        )
    assert signed.status_code == 200 and signed.json()["must_change_password"] is True


async def test_import_reads_xlsx_and_refuses_malformed_files(
    server: RunningServer,
    city: DemoCity,
) -> None:
    admin = await server.login("admin", DEMO_PASSWORD)
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["username", "display_name", "unit", "roles"])
    sheet.append(["xlsx001", "Nguyễn Văn Một", f"#{city.commune_unit_ids[0]}", "staff"])
    sheet.append(["xlsx002", "Trần Thị Hai", f"#{city.commune_unit_ids[1]}", "staff;delegate"])
    raw = io.BytesIO()
    book.save(raw)
    before = await counts(server)
    async with server.http(admin) as client:
        done = await client.post("/api/v1/admin/import", content=raw.getvalue())
        assert done.status_code == 201, done.text
        assert done.json()["users"] == 2
        for content, code in (
            (b"\xff\xfe\x00garbage", "invalid_import_file"),
            (b"PK\x03\x04 not really a zip", "invalid_import_file"),
            (b"who,what\nx,y\n", "invalid_import_file"),
            (b"", "invalid_import_file"),
        ):
            answer = await client.post("/api/v1/admin/import", content=content)
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"]["code"] == code
        query = await client.post("/api/v1/admin/import?dry_run=maybe", content=b"x")
        assert query.status_code == 400
    assert (await counts(server))[0] == before[0] + 2


@pytest.mark.parametrize("who", ["delegate001", "ward001", "secretary", "chair"])
async def test_administration_endpoints_refuse_everyone_but_admin(
    server: RunningServer,
    city: DemoCity,
    who: str,
) -> None:
    token = await server.login(who, DEMO_PASSWORD)
    before = await counts(server)
    target = city.ward_user_ids[2]
    async with server.http(token) as client:
        answers = [
            await client.get("/api/v1/admin/users"),
            await client.post("/api/v1/admin/import?dry_run=true", content=accounts_csv(2)),
            await client.post("/api/v1/admin/import", content=accounts_csv(2)),
            await client.post(
                f"/api/v1/users/{target}/password-reset", json={"password": "Mot-mat-khau-moi"}
            ),
            await client.post(f"/api/v1/users/{target}/sign-out-everywhere"),
            await client.delete(f"/api/v1/users/{target}/sign-in-throttle"),
            await client.get("/api/v1/audit"),
            await client.get("/api/v1/audit/chain"),
            await client.get("/api/v1/audit/export"),
            await client.post(
                "/api/v1/units", json={"name": "X", "kind": "ward", "parent_id": city.root_unit_id}
            ),
            await client.patch(f"/api/v1/users/{target}", json={"title": "X"}),
        ]
    assert [a.status_code for a in answers] == [403] * len(answers), [a.text for a in answers]
    users, units, _ = await counts(server)
    assert (users, units) == before[:2]


async def test_search_and_paging(server: RunningServer, city: DemoCity) -> None:
    admin = await server.login("admin", DEMO_PASSWORD)
    async with server.http(admin) as client:
        everyone = (await client.get("/api/v1/admin/users", params={"per_page": 5})).json()
        assert everyone["total"] == 19 and len(everyone["users"]) == 5
        last = (await client.get("/api/v1/admin/users", params={"per_page": 5, "page": 4})).json()
        assert len(last["users"]) == 4
        delegates = (await client.get("/api/v1/admin/users", params={"role": "delegate"})).json()
        # The nine delegates and the chair, who sits as a delegate too.
        assert delegates["total"] == 10
        assert all("delegate" in u["roles"] for u in delegates["users"])
        wards = (await client.get("/api/v1/admin/users", params={"q": "WARD00"})).json()
        assert wards["total"] == 6
        unit = (
            await client.get("/api/v1/admin/users", params={"unit_id": city.commune_unit_ids[0]})
        ).json()
        assert [u["username"] for u in unit["users"]] == ["ward001"]
        literal = (await client.get("/api/v1/admin/users", params={"q": "%"})).json()
        assert literal["total"] == 0
        for params in (
            {"page": "0"},
            {"per_page": "201"},
            {"role": "king"},
            {"active": "maybe"},
            {"page": "99999999999999999999"},
        ):
            bad = await client.get("/api/v1/admin/users", params=params)
            assert bad.status_code == 400, params


async def test_audit_viewer_filters_pages_exports_and_checks_the_chain(
    server: RunningServer,
    city: DemoCity,
) -> None:
    admin = await server.login("admin", DEMO_PASSWORD)
    async with server.http(admin) as client:
        await client.patch(f"/api/v1/users/{city.ward_user_ids[0]}", json={"title": "Chủ tịch"})
        page = (await client.get("/api/v1/audit", params={"action": "user.update"})).json()
        assert page["total"] == 1
        record = page["records"][0]
        assert record["actor"] == "admin" and record["subject"] == f"user:{city.ward_user_ids[0]}"
        logins = (await client.get("/api/v1/audit", params={"action": "auth."})).json()
        assert logins["total"] >= 1
        chain = (await client.get("/api/v1/audit/chain")).json()
        assert chain["ok"] is True and chain["records"] >= 2
        csv_text = (
            await client.get(
                "/api/v1/audit/export", params={"format": "csv", "action": "user.update"}
            )
        ).text
        assert csv_text.splitlines()[0].startswith("seq,at,actor_id")
        assert len(csv_text.splitlines()) == 2
        future = (
            await client.get(
                "/api/v1/audit/export",
                params={"format": "json", "since": "2999-01-01T00:00:00+00:00"},
            )
        ).text
        assert future == ""
        bad = await client.get("/api/v1/audit", params={"since": "yesterday"})
        assert bad.status_code == 400
    # An auditor reads the log and nothing else of the administration.
    async with server.http(admin) as client:
        made = await client.post(
            "/api/v1/users",
            json={
                "username": "kiemtoan",
                "display_name": "Kiểm toán viên",
                "unit_id": city.office_unit_id,
                "roles": ["auditor"],
                "password": "Kiem-toan-2026-xanh",
            },
        )
        assert made.status_code == 201, made.text
    auditor = await server.login("kiemtoan", "Kiem-toan-2026-xanh")
    async with server.http(auditor) as client:
        assert (await client.get("/api/v1/audit")).status_code == 200
        assert (await client.get("/api/v1/audit/chain")).status_code == 200
        assert (await client.get("/api/v1/admin/users")).status_code == 403


def test_an_audit_export_cell_never_runs_as_a_formula() -> None:
    """Names and subjects come from what people typed; a spreadsheet opening the export
    must show them as text, whatever they begin with (a tab or a carriage return too,
    which the spreadsheet may trim before reading a formula)."""
    cells = ['=HYPERLINK("x")', "+1", "-1", "@SUM(1)", "\t=1+1", "\r=1+1", "user:ward001"]
    line = _csv_line([*cells, 7, None])
    assert line.rstrip("\r\n").split(",")[-2:] == ["7", ""]
    read = next(csv.reader(io.StringIO(line)))
    assert read[:6] == ["'" + cell for cell in cells[:6]]
    assert read[6] == "user:ward001"
