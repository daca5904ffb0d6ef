"""The administration page: units, accounts, a bulk import with a dry run, lifting a
sign-in lock and resetting a password, all in the browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from server.demo import DemoCity
from server.org.models import User
from tests.browser.conftest import ARTIFACTS, WAIT_MS, shot, signed_in
from tests.conftest import DEMO_PASSWORD
from tests.harness import RunningServer
from tests.server.test_admin import accounts_csv

pytestmark = pytest.mark.browser
DESKTOP = {"width": 1440, "height": 900}


async def user_count(server: RunningServer) -> int:
    async with server.ctx.read() as session:
        return int((await session.execute(select(func.count()).select_from(User))).scalar_one())


async def test_admin_manages_units_accounts_import_locks_and_passwords(
    server: RunningServer,
    city: DemoCity,
    browser: Any,
    tmp_path: Path,
) -> None:
    _, page = await signed_in(server, browser, "admin", viewport=DESKTOP)
    await page.goto(f"{server.url}/app/admin/#units")
    await page.wait_for_selector("#new-unit-form")

    # A new ward under the city.
    await page.fill("#f-name", "Phường Hoàn Kiếm Mới")
    await page.select_option("#f-kind", "ward")
    await page.click("#create-unit")
    await page.wait_for_selector("#unit-tree li:has-text('Phường Hoàn Kiếm Mới')")
    await shot(page, "admin-units")

    # A new account in it.
    await page.click("#tab-users")
    await page.wait_for_selector("#users-table")
    await page.click("#new-user")
    form = page.locator("#new-user-form")
    await form.locator("[name=username]").fill("hoankiem01")
    await form.locator("[name=display_name]").fill("Lê Thị Hoàn")
    await form.locator("[name=title]").fill("Chủ tịch UBND phường")
    await form.locator("[name=unit_id]").select_option(label="\u00a0\u00a0Phường Hoàn Kiếm Mới")
    await form.locator("[name=roles][value=staff]").check()
    await form.locator("[name=password]").fill("Ho-Guom-xanh-2026")
    await form.locator("button[type=submit]").click()
    await page.wait_for_selector("#users-table tr[data-username=hoankiem01]")
    await server.login("hoankiem01", "Ho-Guom-xanh-2026")

    # Bulk import: the dry run lists both bad rows and writes nothing.
    before = await user_count(server)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(
        accounts_csv(
            200,
            bad_rows={
                50: "user,ward001,Trùng tên,,Phường Thử Nghiệm,,,staff,none,\n",
                120: "user,import120,Cán bộ 120,,Phường Không Có,,,staff,none,\n",
            },
        )
    )
    await page.click("#tab-import")
    await page.set_input_files("#import-file", str(bad))
    await page.click("#import-check")
    await page.wait_for_selector("#import-problems")
    rows = await page.eval_on_selector_all(
        "#import-problems tbody tr td:first-child", "(tds) => tds.map((td) => td.textContent)"
    )
    assert rows == ["52", "122"]
    # The problems are said in Vietnamese, naming what is wrong.
    texts = await page.eval_on_selector_all(
        "#import-problems tbody tr td:last-child", "(tds) => tds.map((td) => td.textContent)"
    )
    assert texts == [
        "Tên đăng nhập “ward001” đã có người dùng.",
        "Không có đơn vị nào tên “Phường Không Có”.",
    ], texts
    assert await page.is_disabled("#import-run")
    await shot(page, "admin-import-dry-run")
    assert await user_count(server) == before
    good = tmp_path / "good.csv"
    good.write_bytes(accounts_csv(200))
    await page.set_input_files("#import-file", str(good))
    await page.click("#import-check")
    await page.wait_for_selector("#import-result .chain-ok")
    await page.click("#import-run")
    await page.wait_for_selector("#import-result :text('Đã nhập 200 tài khoản')")
    assert await user_count(server) == before + 200

    # A lock: the chair mistypes; the admin lifts it and resets the password.
    async with server.http() as client:
        for _ in range(server.settings.login_max_failures + 1):
            await client.post(
                "/api/v1/auth/login", json={"username": "chair", "password": "wrong-wrong-1"}
            )
        held = await client.post(
            "/api/v1/auth/login", json={"username": "chair", "password": DEMO_PASSWORD}
        )
    assert held.status_code == 429
    await page.click("#tab-users")
    await page.fill("input[name=q]", "chair")
    await page.press("input[name=q]", "Enter")
    await page.click("#users-table tr[data-username=chair]")
    await page.wait_for_selector("#lift-lock")
    await shot(page, "admin-user-locked")
    await page.click("#lift-lock")
    await page.wait_for_selector("#users-table tr[data-username=chair]:not(:has-text('Tạm chặn'))")
    await page.fill("#reset-password", "Dat-lai-cho-chu-toa")
    await page.click("#reset-submit")
    await page.wait_for_selector(
        "#users-table tr[data-username=chair]:has-text('Phải đổi mật khẩu')"
    )
    async with server.http() as client:
        signed = await client.post(
            "/api/v1/auth/login", json={"username": "chair", "password": "Dat-lai-cho-chu-toa"}
        )
    assert signed.status_code == 200 and signed.json()["must_change_password"] is True

    # The audit log: the chain holds, and the filter finds the reset.
    await page.click("#tab-audit")
    await page.wait_for_selector("#chain-status.chain-ok")
    await page.select_option("#f-action", "user.update")
    await page.click("#view form.filters button[type=submit]")
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#audit-table tbody tr td:nth-child(4)')]"
        ".every((td) => td.textContent === 'user.update')"
    )
    actions = await page.eval_on_selector_all(
        "#audit-table tbody tr td:nth-child(4)", "(tds) => tds.map((td) => td.textContent)"
    )
    assert actions and set(actions) == {"user.update"}
    await shot(page, "admin-audit")
    assert page.js_errors == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("where", ["chat", "delegate", "chair"])
async def test_own_password_change_from_the_header_of_a_page(
    server: RunningServer,
    city: DemoCity,
    browser: Any,
    where: str,
) -> None:
    who = {"chat": "ward002", "delegate": "delegate002", "chair": "chair"}[where]
    # Signed in through the page (not a stored session put back on every load).
    context = await browser.new_context(viewport=DESKTOP, locale="vi-VN")
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"{server.url}/app/?next=/app/{where}/")
    await page.fill("#username", who)
    await page.fill("#password", DEMO_PASSWORD)
    await page.click("#login-submit")
    await page.wait_for_url(f"**/app/{where}/")
    await page.click("#account-menu")
    await page.fill("#account-current", DEMO_PASSWORD)
    await page.fill("#account-new", "Mua-thu-Ha-Noi-2026")
    await page.fill("#account-repeat", "Mua-thu-Ha-Noi-2026")
    await page.click("#account-submit")
    # The page reloads with its new token and stays signed in; its socket is back.
    await page.wait_for_selector(".toast:has-text('Đã đổi mật khẩu')")
    if where == "chat":
        await page.wait_for_function(
            "() => document.getElementById('conn-status')?.dataset.status === 'online'", polling=250
        )
    assert page.url.endswith(f"/app/{where}/")
    await server.login(who, "Mua-thu-Ha-Noi-2026")


async def test_reset_user_must_choose_a_new_password_at_sign_in(
    server: RunningServer,
    city: DemoCity,
    browser: Any,
) -> None:
    admin = await server.login("admin", DEMO_PASSWORD)
    async with server.http(admin) as client:
        reset = await client.post(
            f"/api/v1/users/{city.ward_user_ids[0]}/password-reset",
            json={"password": "Tam-thoi-2026-abc"},
        )
        assert reset.status_code == 200
    context = await browser.new_context(viewport=DESKTOP, locale="vi-VN")
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"{server.url}/app/")
    await page.fill("#username", "ward001")
    await page.fill("#password", "Tam-thoi-2026-abc")
    await page.click("#login-submit")
    await page.wait_for_selector("#account-form")
    await page.fill("#account-current", "Tam-thoi-2026-abc")
    await page.fill("#account-new", "Ca-phe-trung-pho-co")
    await page.fill("#account-repeat", "Ca-phe-trung-pho-co")
    await shot(page, "account-forced-change")
    await page.click("#account-submit")
    await page.wait_for_url("**/app/chat/**")
    await server.login("ward001", "Ca-phe-trung-pho-co")


@pytest.mark.parametrize("who", ["delegate001", "ward001"])
async def test_admin_page_refuses_delegates_and_clerks(
    server: RunningServer,
    city: DemoCity,
    browser: Any,
    who: str,
) -> None:
    _, page = await signed_in(server, browser, who, viewport=DESKTOP)
    await page.goto(f"{server.url}/app/admin/")
    await page.wait_for_selector("#view .error-text")
    assert await page.locator("#users-table").count() == 0
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_artifacts_dir_is_ignored() -> None:
    ignored = (ARTIFACTS.parent / ".gitignore").read_text()
    assert "test-artifacts" in ignored


async def test_signed_out_pages_go_to_sign_in_without_an_error(
    server: RunningServer,
    browser: Any,
) -> None:
    context = await browser.new_context(viewport=DESKTOP, locale="vi-VN")
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    for path in ("chat/", "admin/", "delegate/", "chair/", "projector/"):
        await page.goto(f"{server.url}/app/{path}")
        await page.wait_for_selector("#login-form:visible")
        assert "next=" in page.url, path
    assert problems == []
