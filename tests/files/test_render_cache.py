"""The render cache stays under its limit: least recently used pages go first."""

from __future__ import annotations

import os
import time
from pathlib import Path

from server.files.runtime import runtime
from server.files.storage import RENDER_TOUCH_SECS, ContentStore
from tests.conftest import MakeServer
from tests.files import samples
from tests.files.conftest import seeded_token, upload
from tests.harness import eventually

SHA_A = "a" * 64
SHA_B = "b" * 64


def cached_page(
    store: ContentStore, sha: str, page: int, size: int, age_secs: float, now: float
) -> Path:
    path = store.render_path(sha, page, 1024)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG" + b"x" * (size - 4))
    os.utime(path, (now - age_secs, now - age_secs))
    return path


def test_trim_removes_the_least_recently_used_pages_down_to_the_limit(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    now = time.time()
    old_a = [cached_page(store, SHA_A, n, 1000, 7200 - n, now) for n in range(1, 5)]
    recent_b = [cached_page(store, SHA_B, n, 1000, 3600 - n, now) for n in range(1, 5)]
    # Under the limit: nothing goes.
    assert store.trim_renders(8000, now, keep_secs=60) == (0, 8000)
    assert all(p.exists() for p in old_a + recent_b)
    # Over it: the oldest pages go until 90% of the limit is left.
    assert store.trim_renders(5000, now, keep_secs=60) == (4, 4000)
    assert not any(p.exists() for p in old_a)
    assert all(p.exists() for p in recent_b)
    # The document's directory went with its last page.
    assert not old_a[0].parent.exists()


def test_pages_used_recently_are_kept_and_reading_refreshes_a_page(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    now = time.time()
    pages = [cached_page(store, SHA_A, n, 1000, 7200 - n, now) for n in range(1, 4)]
    # Reading the oldest page makes it the most recently used.
    assert store.touch_render(pages[0], now)
    assert pages[0].stat().st_mtime > now - RENDER_TOUCH_SECS
    assert not store.touch_render(store.render_path(SHA_B, 1, 1024), now)
    assert store.trim_renders(1500, now, keep_secs=60) == (2, 1000)
    assert [p.exists() for p in pages] == [True, False, False]
    # Whatever the limit, a page used within keep_secs stays.
    assert store.trim_renders(1, now, keep_secs=60) == (0, 1000)
    assert pages[0].exists()


async def test_the_server_trims_its_cache_and_renders_trimmed_pages_again(
    make_server: MakeServer,
) -> None:
    server = await make_server(
        render_cache_max_bytes=1,
        render_cache_keep_secs=0,
        render_cache_trim_interval_secs=1,
        render_ahead_pages=0,
        render_memory_cache_bytes=0,
    )
    token = await seeded_token(server, "delegate001")
    renders = Path(server.settings.data_dir) / "files" / "renders"
    async with server.http(token) as client:
        response = await upload(client, samples.text_pdf(2))
        assert response.status_code == 201, response.text
        file_id = response.json()["id"]
        first = await client.get(f"/api/v1/files/{file_id}/pages/1.png?width=400")
        assert first.status_code == 200
        done = runtime(server.ctx).renders_done

        await eventually(lambda: not any(renders.rglob("*.png")), "the renders trimmed")
        again = await client.get(f"/api/v1/files/{file_id}/pages/1.png?width=400")
        assert again.status_code == 200
        assert again.content == first.content
        assert runtime(server.ctx).renders_done == done + 1
