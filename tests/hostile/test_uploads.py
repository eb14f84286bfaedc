"""Uploaded files never leak: a ``submit --attach upload`` killed mid-upload leaves files that ``delete`` or the next
submit finds, and a batch's uploads go when its retention removes its keys (the worker's uploads sweep).

Real components throughout: the producer CLI (a real process where it is killed), Redis, arq workers and the
simulator's Files API over HTTP. The simulator can hold uploads' answers after storing them (``/_sim/files/hold``),
which is exactly what a client killed mid-upload leaves at the provider: a file whose id it never learned.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from click.testing import CliRunner
from redis.asyncio import Redis
from reportlab.lib.pagesizes import letter
from reportlab.pdfgen import canvas

from producer.cli import main as producer
from producer.submit.attachments import Uploader
from schemas.attachments import Attachment
from store.keys import Keys
from store.redis_typing import awaited
from store.uploads import (
    INTENT_SETTLE_MS,
    UPLOAD_EXPIRES_S,
    BatchFiles,
    Intent,
    ProviderFiles,
    UploadStore,
    delete_files,
    find_intents,
    new_nonce,
    upload_filename,
)
from tests.conftest import API_KEY, REPO
from tests.helpers import results_by_id, running_worker, sim_get, sim_post, until
from tests.openapi_spec import validate_component
from worker.uploads_sweep import UploadsSweep

PREFIX = "test:"
KEYS = Keys(PREFIX)


# ------------------------------------------------------------------------------------------------------ helpers
def pdf(text: str) -> bytes:
    out = io.BytesIO()
    page = canvas.Canvas(out, pagesize=letter, invariant=1)
    page.drawString(72, 720, text)
    page.showPage()
    page.save()
    return out.getvalue()


def documents(tmp_path: Path, name: str, count: int = 3) -> Path:
    root = tmp_path / name
    root.mkdir()
    for i in range(count):
        (root / f"invoice-{i}.pdf").write_bytes(pdf(f"Invoice INV-{i} from ACME, total {10 + i}.00 USD"))
    return root


def submit_args(root: Path, batch_id: str) -> list[str]:
    return [
        "submit",
        str(root),
        "--schema",
        "invoice",
        "--model",
        "gpt-4o",
        "--batch-id",
        batch_id,
        "--attach",
        "upload",
    ]


async def cli(args: list[str], **env: str) -> Any:
    """The producer CLI in a thread (the simulator serves from this event loop)."""
    return await asyncio.to_thread(CliRunner().invoke, producer, args, env=env)


async def stored(sim: Any) -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = (await sim_get(sim, "/_sim/files"))["files"]
    return files


async def kill_mid_upload(sim: Any, root: Path, batch_id: str, uploads: int) -> None:
    """A real ``producer submit --attach upload`` process, SIGKILLed once the provider has stored ``uploads`` files
    whose ids it never got back."""
    await sim_post(sim, "/_sim/files/hold", {"hold": True})
    env = {**os.environ, "OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": sim.base_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "producer",
        *submit_args(root, batch_id),
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:

        async def all_stored() -> bool:
            return len(await stored(sim)) >= uploads

        await until(all_stored, 60, f"{uploads} uploads stored by the provider")
    finally:
        proc.kill()
        await proc.wait()
    await sim_post(sim, "/_sim/files/hold", {"hold": False})


def registry_keys(cli_env: Any) -> list[bytes]:
    return sorted(cli_env.scan_iter(f"{PREFIX}uploads*"))


@pytest.fixture
async def areds(cli_env: Any, flushed_redis: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(flushed_redis)
    yield client
    await client.aclose()


# ------------------------------------------------------------------------------------------------------ killed submit
async def test_delete_removes_the_files_of_a_submit_killed_mid_upload(tmp_path: Path, cli_env: Any, sim: Any) -> None:
    """Files the provider stored for a killed submit, whose ids it never learned, are found and deleted by delete."""
    root = documents(tmp_path, "killed")
    await kill_mid_upload(sim, root, "killed", 3)
    uploads = cli_env.hgetall(f"{PREFIX}batch:killed:uploads")
    assert len(uploads) == 3
    assert all(value.startswith(b"pending:") for value in uploads.values())  # intents, recorded before the uploads

    deleted = await cli(["delete", "killed"], OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=sim.base_url)
    assert deleted.exit_code == 0, deleted.output
    assert "3 uploaded file(s) deleted at the provider" in deleted.stderr
    assert await stored(sim) == []


async def test_a_rerun_submit_adopts_the_uploads_a_killed_submit_made(
    tmp_path: Path, cli_env: Any, sim: Any, settings: Any, run_worker: Any, areds: Redis
) -> None:
    """The next submit of the batch finds the killed submit's files by their intents and uses them: no upload twice,
    no file left over, and every line succeeds on them."""
    root = documents(tmp_path, "rerun")
    await kill_mid_upload(sim, root, "rerun", 3)
    again = await cli(submit_args(root, "rerun"), OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=sim.base_url)
    assert again.exit_code == 0, again.output
    snapshot = await sim_get(sim, "/_sim/files")
    assert snapshot["count"] == 3
    assert sorted(snapshot["uploads_per_sha256"].values()) == [1, 1, 1]  # adopted, not uploaded again
    recorded = {v.decode() for v in cli_env.hvals(f"{PREFIX}batch:rerun:uploads")}
    assert recorded == {f["id"] for f in snapshot["files"]}

    await run_worker()
    results = await results_by_id(areds, KEYS, "rerun")
    assert {r.status for r in results.values()} == {"succeeded"}, results
    deleted = await cli(["delete", "rerun"], OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=sim.base_url)
    assert deleted.exit_code == 0, deleted.output
    assert await stored(sim) == []
    assert registry_keys(cli_env) == []  # every file deleted, every intent resolved: nothing left to sweep


async def test_the_sweep_finds_a_killed_submits_uploads_once_its_batch_is_gone(
    tmp_path: Path, cli_env: Any, sim: Any, settings: Any
) -> None:
    """A killed submit's batch deleted without an API key: the worker's sweep finds the files by the intents' nonces."""
    root = documents(tmp_path, "nokey", 2)
    await kill_mid_upload(sim, root, "nokey", 2)
    deleted = await cli(["delete", "nokey"])
    assert deleted.exit_code == 0, deleted.output
    assert len(await stored(sim)) == 2

    async def none_stored() -> bool:
        return await stored(sim) == []

    async with running_worker(settings):
        await until(none_stored, 60, "the sweep deleted the interrupted uploads")


# ------------------------------------------------------------------------------------------------------ retention
async def test_retention_deletes_a_batch_s_uploads_when_its_keys_expire(
    tmp_path: Path, cli_env: Any, sim: Any, settings: Any, run_worker: Any, areds: Redis
) -> None:
    """A batch whose retention passed loses its uploads (no process present when its keys expired); a live batch's
    uploads and files we never made stay."""
    short = await cli(
        submit_args(documents(tmp_path, "short", 2), "short"),
        OPENAI_API_KEY=API_KEY,
        OPENAI_BASE_URL=sim.base_url,
        EXTRACT_BATCH_TTL_S="1",
    )
    assert short.exit_code == 0, short.output
    kept = await cli(
        submit_args(documents(tmp_path, "kept", 1), "kept"), OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=sim.base_url
    )
    assert kept.exit_code == 0, kept.output
    async with openai.AsyncOpenAI(api_key=API_KEY, base_url=sim.base_url) as client:
        # The user's own file, named as ours would be: it carries no intent of ours, so it is never touched.
        own = await client.files.create(
            file=(upload_filename(new_nonce(), "mine.pdf"), b"%PDF-1.4"), purpose="user_data"
        )
    await run_worker()
    kept_files = {v.decode() for v in cli_env.hvals(f"{PREFIX}batch:kept:uploads")}
    assert len(kept_files) == 1

    async def short_expired() -> bool:
        return not cli_env.exists(f"{PREFIX}batch:short")

    await until(short_expired, 30, "the short batch's keys expired")
    assert len(await stored(sim)) == 4  # expiring keys alone deletes nothing at the provider

    async def only_kept_left() -> bool:
        return {f["id"] for f in await stored(sim)} == {*kept_files, own.id}

    async with running_worker(settings):
        await until(only_kept_left, 60, "the sweep deleted the expired batch's uploads")
    members = {m.decode() for m in await areds.zrange(KEYS.uploads_index, 0, -1)}
    assert [m.split(":")[0] for m in members] == ["kept"]


async def test_the_sweep_deletes_what_delete_left_without_a_key(
    tmp_path: Path, cli_env: Any, sim: Any, settings: Any
) -> None:
    root = documents(tmp_path, "left", 2)
    result = await cli(submit_args(root, "left"), OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=sim.base_url)
    assert result.exit_code == 0, result.output
    deleted = await cli(["delete", "left"])
    assert "2 uploaded file(s) were not deleted" in deleted.stderr

    async def none_stored() -> bool:
        return await stored(sim) == []

    async with running_worker(settings):
        await until(none_stored, 60, "the sweep deleted the files delete left")

    async def registry_empty() -> bool:
        return registry_keys(cli_env) == []

    await until(registry_empty, 10, "the registry forgot the deleted files")


# ------------------------------------------------------------------------------------------------------ the sweep
async def test_a_sweep_that_cannot_reach_the_provider_keeps_the_files_and_deletes_them_later(
    tmp_path: Path, cli_env: Any, sim: Any, areds: Redis
) -> None:
    root = documents(tmp_path, "later", 2)
    result = await cli(submit_args(root, "later"), OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=sim.base_url)
    assert result.exit_code == 0, result.output
    assert (await cli(["delete", "later"])).exit_code == 0
    unreachable = openai.AsyncOpenAI(api_key=API_KEY, base_url="http://127.0.0.1:9/v1", max_retries=0, timeout=2)
    counts = await UploadsSweep(areds, KEYS, unreachable).run_once()
    await unreachable.close()
    assert counts.swept is not None
    assert len(counts.swept.failed) == 2
    assert len(await stored(sim)) == 2
    await areds.zadd(KEYS.uploads_index, dict.fromkeys(await areds.zrange(KEYS.uploads_index, 0, -1), 0))  # due now
    async with openai.AsyncOpenAI(api_key=API_KEY, base_url=sim.base_url, max_retries=0) as client:
        counts = await UploadsSweep(areds, KEYS, client).run_once()
    assert counts.swept is not None
    assert counts.swept.deleted == 2
    assert await stored(sim) == []
    assert registry_keys(cli_env) == []


async def test_the_sweep_loop_survives_a_redis_that_is_gone_and_stops_on_shutdown(
    sim: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gone = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=1)
    async with openai.AsyncOpenAI(api_key=API_KEY, base_url=sim.base_url) as client:
        sweep = UploadsSweep(gone, KEYS, client, every_s=0.01)
        with caplog.at_level(logging.WARNING, logger="worker.uploads"):
            sweep.start()

            async def failed_twice() -> bool:
                return sum("run failed" in r.getMessage() for r in caplog.records) >= 2

            await until(failed_twice, 30, "the sweep logged failed runs and went on")
            await sweep.stop()
    await gone.aclose()


async def test_an_intent_is_forgotten_only_once_it_has_settled(cli_env: Any, sim: Any, areds: Redis) -> None:
    """An interrupted upload that found no file is kept while one may still land, and forgotten after."""
    batch = BatchFiles("gone", 1)
    store = UploadStore(areds, KEYS)
    now = await store.now_ms()
    young, old = Intent(new_nonce(), now), Intent(new_nonce(), now - INTENT_SETTLE_MS - 1000)
    await awaited(areds.sadd(KEYS.batch_files("gone", 1), young.value, old.value))
    await areds.zadd(KEYS.uploads_index, {batch.member: 0})
    async with openai.AsyncOpenAI(api_key=API_KEY, base_url=sim.base_url) as client:
        swept = await delete_files(store, batch, ProviderFiles(client))
    assert swept.open_intents == 1
    assert swept.come_back_ms is not None
    assert 0 < swept.come_back_ms <= INTENT_SETTLE_MS + 1000
    assert {m.decode() for m in await awaited(areds.smembers(KEYS.batch_files("gone", 1)))} == {young.value}


# ------------------------------------------------------------------------------------------------------ one upload
async def test_an_upload_whose_answer_is_lost_is_looked_up_not_made_twice(sim: Any) -> None:
    await sim_post(sim, "/_sim/files/hold", {"hold": True})
    client = openai.AsyncOpenAI(api_key=API_KEY, base_url=sim.base_url, max_retries=0, timeout=1.0)
    uploader = Uploader(client, backoff_base_s=0.01)
    attachment = Attachment(
        kind="pdf", media_type="application/pdf", filename="a.pdf", source="blob", ref="sha256:x", content="sha256:x"
    )
    data = pdf("lost answer")
    intent = Intent(new_nonce(), 0)
    try:
        uploaded = await uploader.upload(attachment, data, intent)
    finally:
        await sim_post(sim, "/_sim/files/hold", {"hold": False})
        await uploader.close()
    files = await stored(sim)
    assert [f["id"] for f in files] == list(uploaded.file_ids)
    assert uploaded.keep_intent  # another attempt's file could still land: the intent stays for delete and the sweep
    assert files[0]["filename"] == upload_filename(intent.nonce, "a.pdf")
    assert files[0]["expires_at"] - files[0]["created_at"] == UPLOAD_EXPIRES_S  # the backstop stays


async def test_a_lookup_matches_only_recorded_nonces_and_stops_at_the_intents_time() -> None:
    class File:
        def __init__(self, id: str, filename: str, created_at: int) -> None:
            self.id, self.filename, self.bytes, self.created_at = id, filename, 1, created_at

    ours = Intent(new_nonce(), 10_000_000_000)
    listing = [
        File("f1", upload_filename(ours.nonce, "a.pdf"), 10_000_100),
        File("f2", upload_filename(new_nonce(), "a.pdf"), 10_000_050),  # named like ours, not our intent
        File("f3", "a.pdf", 10_000_040),
        File("f4", upload_filename(ours.nonce, "a.pdf"), 1),  # older than the intent by far: never read
    ]

    async def files() -> AsyncIterator[Any]:
        for item in listing:
            yield item

    found = await find_intents(files(), [ours], max_files=100)
    assert found.complete
    assert [f.id for f in found.files[ours.nonce]] == ["f1"]
    capped = await find_intents(files(), [ours], max_files=2)
    assert not capped.complete


# ------------------------------------------------------------------------------------------------------ simulator
async def test_the_simulator_lists_files_as_the_api_does(sim: Any) -> None:
    async with openai.AsyncOpenAI(api_key=API_KEY, base_url=sim.base_url) as client:
        made = [(await client.files.create(file=(f"{i}.pdf", b"%PDF"), purpose="user_data")).id for i in range(5)]
        await client.files.create(file=("b.jsonl", b"{}\n"), purpose="batch")
        listed = [f.id async for f in client.files.list(purpose="user_data", limit=2)]
        assert listed == made[::-1]  # newest first, across three pages
        oldest_first = [f.id async for f in client.files.list(purpose="user_data", order="asc", limit=3)]
        assert oldest_first == made
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(f"{sim.base_url}/files", params={"limit": "2"}) as response:
            body = await response.json()
        validate_component("ListFilesResponse", body)
        assert body["has_more"] is True
        assert (body["first_id"], body["last_id"]) == (body["data"][0]["id"], body["data"][1]["id"])
        async with session.get(f"{sim.base_url}/files", params={"limit": "0"}) as response:
            assert response.status == 400
        async with session.get(f"{sim.base_url}/files", params={"after": "file-nope"}) as response:
            assert response.status == 404
