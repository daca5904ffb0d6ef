"""A PDF that keeps the parser busy forever costs one worker, never the server: its
upload is refused, or (reading its text, after the upload) it is kept without text."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy.orm import undefer

from server.files.models import StoredFile
from server.files.runtime import runtime
from tests.conftest import MakeServer
from tests.files import samples
from tests.files.conftest import seeded_token, stored, upload
from tests.harness import RunningServer, eventually


async def test_endless_parse_times_out_in_the_worker_while_requests_are_served(
    make_server: MakeServer,
) -> None:
    # The upload's checks pass (pypdf and pdfium open it at once); reading its text would
    # take pdfium far longer than the limit: that happens after the upload is answered.
    server = await make_server(pdf_text_timeout_secs=1.0, render_ahead_pages=0)
    token = await seeded_token(server, "delegate001")
    rt = runtime(server.ctx)
    before = await stored(server)
    async with server.http(token) as client:
        response = await upload(client, samples.slow_pdf(), name="vong-lap.pdf")
        assert response.status_code == 201, response.text
        hostile = response.json()["id"]
        served = 0
        while rt.text_pool.killed == 0:
            me = await client.get("/api/v1/me")
            assert me.status_code == 200
            served += 1
            await asyncio.sleep(0.05)  # pace the checks; the loop ends when the worker is killed
        # Other requests went on while the worker was stuck, and the worker was killed; the
        # file is kept, without searchable text.
        assert served >= 1
        assert rt.text_pool.killed == 1
        row = await eventually(
            lambda: _text_read(server, hostile), what="the text given up", timeout=30
        )
        assert row.text == ""
        assert (await stored(server)).rows == before.rows + 1

        # The next document's text is read by a fresh worker.
        good = await upload(client, samples.text_pdf(2))
        assert good.status_code == 201, good.text
        assert good.json()["pages"] == 2
        row = await eventually(
            lambda: _text_read(server, good.json()["id"]), what="the next text", timeout=30
        )
        assert "Trang 2" in row.text
        assert rt.text_pool.started == 2
    await rt.settled()


async def _text_read(server: RunningServer, file_id: int) -> StoredFile | None:
    async with server.ctx.read() as session:
        row = await session.get(StoredFile, file_id, options=[undefer(StoredFile.text)])
    assert row is not None
    return row if not row.text_pending else None


async def test_a_worker_out_of_memory_fails_only_its_job(make_server: MakeServer) -> None:
    # Each page's content inflates to 70 MB (under pypdf's own limit per stream) and pypdf
    # keeps them all: within a 300 MB address space the worker runs out of memory. The
    # upload is refused, and the next one is checked by a fresh worker.
    server = await make_server(pdf_worker_memory_mb=300, render_ahead_pages=0)
    token = await seeded_token(server, "delegate001")
    rt = runtime(server.ctx)
    before = await stored(server)
    async with server.http(token) as client:
        response = await upload(client, samples.bomb_pdf(70, pages=4))
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_pdf"
        assert "memory" in response.json()["error"]["message"]
        assert await stored(server) == before
        good = await upload(client, samples.text_pdf(1))
        assert good.status_code == 201, good.text
    assert rt.parse_pool.started == 2


async def test_a_full_pool_refuses_new_jobs_instead_of_queueing_without_end(tmp_path: Path) -> None:
    from server.errors import TooManyRequests
    from server.files.worker import WorkerPool, WorkerTimeout

    slow = tmp_path / "slow.pdf"
    slow.write_bytes(samples.slow_pdf())
    job = {"path": str(slow), "max_text_chars": 100}
    pool = WorkerPool("test", 1, memory_mb=512, max_jobs=10, queue_limit=1)
    try:
        running = asyncio.create_task(pool.run("extract_text", job, 1.0))
        await asyncio.sleep(0)  # let it take the only worker
        waiting = asyncio.create_task(pool.run("extract_text", job, 1.0))
        await asyncio.sleep(0)
        with pytest.raises(TooManyRequests):
            await pool.run("extract_text", job, 1.0)
        for task in (running, waiting):
            with pytest.raises(WorkerTimeout):
                await task
        assert pool.killed == 2
    finally:
        pool.close()
