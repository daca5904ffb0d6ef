"""The web client's static files, checked without a browser: every text key used by the
pages exists in both languages, every script the pages load is served, and nothing is
fetched from outside the server."""

from __future__ import annotations

import re
from pathlib import Path

from tests.harness import RunningServer

STATIC = Path(__file__).resolve().parents[2] / "web_client" / "static"
KEY = re.compile(r"^\s+(\w+): ", re.M)


def dictionary(name: str) -> set[str]:
    text = (STATIC / "js" / "i18n.js").read_text(encoding="utf-8")
    start = text.index(f"const {name} = {{")
    end = text.index("\n};", start)
    # Pages may add their own texts with addMessages({vi: {...}, en: {...}}).
    added = (STATIC / "js" / "admin-i18n.js").read_text(encoding="utf-8")
    own_start = added.index(f"  {name}: {{") + len(f"  {name}: {{")
    own_end = added.index("\n  },", own_start)
    return set(KEY.findall(text[start:end])) | set(KEY.findall(added[own_start:own_end]))


def test_both_languages_have_every_key() -> None:
    vi, en = dictionary("vi"), dictionary("en")
    assert vi == en, {"only_vi": sorted(vi - en), "only_en": sorted(en - vi)}
    used: set[str] = set()
    for path in (STATIC / "js").glob("*.js"):
        text = path.read_text(encoding="utf-8")
        used |= set(re.findall(r"\bt\(\"(\w+)\"", text))
        used |= set(re.findall(r"data-i18n(?:-label|-placeholder|-title)?\": \"(\w+)\"", text))
    for path in STATIC.rglob("*.html"):
        used |= set(
            re.findall(
                r'data-i18n(?:-label|-placeholder|-title)?="(\w+)"',
                path.read_text(encoding="utf-8"),
            )
        )
    assert used - vi == set()


def test_nothing_from_outside_the_server() -> None:
    for path in [*STATIC.rglob("*.html"), *STATIC.rglob("*.js"), *STATIC.rglob("*.css")]:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(src|href)=\"(https?:)?//", text), path
        assert not re.search(r"url\(\s*['\"]?(https?:)?//", text), path
        assert not re.search(r"import[^;]*from\s+['\"](https?:)?//", text), path


PAGES = [
    "",
    "login/",
    "chat/",
    "delegate/",
    "chair/",
    "projector/",
    "admin/",
    "prepare/",
    "desk/",
    "recording/",
]


async def test_pages_and_their_scripts_are_served(server: RunningServer) -> None:
    async with server.http() as client:
        for page in PAGES:
            response = await client.get(f"/app/{page}")
            assert response.status_code == 200, page
            assert "text/html" in response.headers["content-type"]
            for src in re.findall(r'(?:src|href)="(/app/[^"]+)"', response.text):
                assert (await client.get(src)).status_code == 200, src
            # Every module a page script imports is served too.
            for src in re.findall(r'src="(/app/js/[^"]+)"', response.text):
                text = (await client.get(src)).text
                for module in re.findall(r'from "\./([\w-]+\.js)"', text):
                    assert (await client.get(f"/app/js/{module}")).status_code == 200, module
        font = await client.get("/app/fonts/DejaVuSans.ttf")
        assert font.status_code == 200 and len(font.content) > 100_000
