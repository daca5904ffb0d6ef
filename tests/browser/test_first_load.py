"""The first load of a page asks for its whole module graph at once: the page names every
module its scripts import (``modulepreload``), under the very URLs the imports use, so no
module is fetched twice and none waits for the one that imports it."""

from __future__ import annotations

from typing import Any

import pytest

from server.demo import DemoCity
from tests.browser.conftest import signed_in, wait_online
from tests.harness import RunningServer

pytestmark = pytest.mark.browser

SCRIPTS = """() => {
  const asked = performance.getEntriesByType('resource').map((e) => e.name)
    .filter((n) => new URL(n).pathname.endsWith('.js'));
  const named = [...document.querySelectorAll('link[rel=modulepreload], script[type=module]')]
    .map((e) => new URL(e.href || e.src, location.href).href);
  return { asked, named };
}"""


@pytest.mark.parametrize("path", ["/app/", "/app/delegate/"])
async def test_every_module_is_named_by_the_page(
    server: RunningServer, city: DemoCity, browser: Any, path: str
) -> None:
    _, page = await signed_in(server, browser, "delegate001")
    await page.goto(f"{server.url}{path}")
    if path != "/app/":
        await wait_online(page)
    else:
        await page.wait_for_selector("#app-header .brand")
    found = await page.evaluate(SCRIPTS)
    asked, named = found["asked"], found["named"]
    assert len(named) > 5, named
    # Every module fetched is one the page named, and each was fetched once.
    assert sorted(set(asked)) == sorted(asked), asked
    assert set(asked) <= set(named), set(asked) - set(named)
    assert all("?v=" in url for url in named), named
    assert page.js_errors == []
