"""What a folder of PDFs costs Redis: ``--attach inline`` against ``--attach upload``, and a copy's worth of a copy.

    .venv/bin/python -m bench.documents [--files 1000] [--kb 200] [--copies 0.2] [--window 100] [--workdir DIR]

Makes ``--files`` distinct PDFs of about ``--kb`` KB each (one page of text and a noise image, so they do not
compress; each differs in its text), plus a share ``--copies`` of them again under other names, and submits the
folder with the real ``producer submit`` CLI, once per mode, each against a fresh private ``redis-server`` and the
simulator (its Files API takes the uploads), with no workers: every line stays queued or waiting, the worst case
for Redis. It prints, per mode: the PDF bytes in the folder, Redis ``used_memory`` after the submit minus before,
the ``:blobs`` hash (``MEMORY USAGE``), the largest and the mean queued job, the uploads the simulator counted, and
the submit's wall time. The point: inline holds each distinct file once (the copies add nothing); upload holds only
file ids, whatever the batch's size; a job is a reference in both.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from PIL import Image
from redis import Redis
from reportlab.lib.pagesizes import letter
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas
from rich.console import Console
from rich.table import Table

from store.keys import Keys
from tests.processes import REPO, RedisServer, simulator_process

PREFIX = "docbench:"
API_KEY = "sk-documents-bench"


def make_pdfs(folder: Path, files: int, kb: int, copies: float, seed: int = 7) -> tuple[int, int]:
    """``files`` distinct PDFs of about ``kb`` KB, and ``copies`` x files of them again; returns the bytes written
    and the bytes of the distinct ones."""
    rng = random.Random(seed)
    side = 64
    while True:  # the noise image's side that makes a PDF of about kb KB
        sample = _pdf(_noise(side, rng), "sizing")
        if len(sample) >= kb * 1000 or side > 2000:
            break
        side = int(side * 1.25)
    image = _noise(side, rng)
    total = 0
    for i in range(files):
        data = _pdf(image, f"Invoice INV-{i:06d} total {rng.randint(10, 9999)}.00 USD")
        (folder / f"invoice-{i:06d}.pdf").write_bytes(data)
        total += len(data)
    distinct = total
    for i in rng.sample(range(files), int(files * copies)):
        data = (folder / f"invoice-{i:06d}.pdf").read_bytes()
        (folder / f"copy-of-{i:06d}.pdf").write_bytes(data)
        total += len(data)
    return total, distinct


def _noise(side: int, rng: random.Random) -> bytes:
    image = Image.frombytes("L", (side, side), rng.randbytes(side * side))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _pdf(png: bytes, text: str) -> bytes:
    out = io.BytesIO()
    page = canvas.Canvas(out, pagesize=letter, invariant=1)
    page.drawString(72, 720, text)
    page.drawImage(ImageReader(io.BytesIO(png)), 72, 200, width=400, height=400)
    page.showPage()
    page.save()
    return out.getvalue()


def run_mode(mode: str, folder: Path, workdir: Path, window: int, sim_url: str) -> dict[str, float]:
    server = RedisServer(workdir / f"redis-{mode}", persist=False)
    server.workdir.mkdir()
    server.start()
    try:
        redis: Any = Redis.from_url(server.url)  # redis-py types sync and async replies as one union
        before = int(redis.info("memory")["used_memory"])
        env = {
            **os.environ,
            "REDIS_URL": server.url,
            "EXTRACT_KEY_PREFIX": PREFIX,
            "OPENAI_API_KEY": API_KEY,
            "OPENAI_BASE_URL": sim_url + "/v1",
        }
        batch = f"docs-{mode}"
        command = [sys.executable, "-m", "producer", "submit", str(folder), "--schema", "invoice"]
        command += ["--model", "gpt-4o", "--batch-id", batch, "--attach", mode, "--window", str(window)]
        started = time.monotonic()
        # With no worker the window fills and submit would wait for ever: stop it once the window is queued.
        proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        keys = Keys(PREFIX).batch(batch)
        while proc.poll() is None:
            fed = redis.hget(keys.record, "fed")
            if fed is not None and int(fed) >= window:
                break
            time.sleep(0.2)  # noqa: TID251 - a synchronous benchmark driver, no event loop here
        wall = time.monotonic() - started
        proc.terminate()
        proc.wait(timeout=30)
        after = int(redis.info("memory")["used_memory"])
        job_sizes = [int(redis.memory_usage(key) or 0) for key in redis.scan_iter(f"arq:job:{PREFIX}{batch}*")]
        blobs = int(redis.memory_usage(keys.blobs, samples=0) or 0) if redis.exists(keys.blobs) else 0
        blob_fields = int(redis.hlen(keys.blobs))
        uploads = redis.hlen(keys.uploads)
        redis.close()
        return {
            "redis_delta": after - before,
            "blobs": blobs,
            "blob_fields": blob_fields,
            "jobs": len(job_sizes),
            "job_max": max(job_sizes, default=0),
            "job_mean": sum(job_sizes) / len(job_sizes) if job_sizes else 0,
            "uploads": uploads,
            "wall_s": wall,
        }
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--kb", type=int, default=200)
    parser.add_argument("--copies", type=float, default=0.2)
    parser.add_argument("--window", type=int, default=0, help="lines fed before the submit is stopped (0: all)")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    console = Console(width=150)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        workdir = Path(tmp)
        folder = workdir / "pdfs"
        folder.mkdir()
        started = time.monotonic()
        total, distinct_bytes = make_pdfs(folder, args.files, args.kb, args.copies)
        count = len(list(folder.iterdir()))
        console.print(
            f"{count:,} PDFs ({args.files:,} distinct, {distinct_bytes / 1e6:,.1f} MB), {total / 1e6:,.1f} MB in all, "
            f"{total / count / 1000:,.0f} KB each on average; made in {time.monotonic() - started:.0f} s"
        )
        window = args.window or count
        table = Table(title=f"Redis after `producer submit` of the folder (no workers; {window:,} lines fed)")
        columns = ("mode", "Redis Δ MB", ":blobs MB", "fields", "÷ distinct MB", "jobs", "job max B", "job mean B")
        for column in (*columns, "uploads", "submit s"):
            table.add_column(column, justify="right")
        results = {}
        with simulator_process("--require-api-key", API_KEY) as sim_url:
            for mode in ("inline", "upload"):
                results[mode] = run_mode(mode, folder, workdir, window, sim_url)
                r = results[mode]
                table.add_row(
                    mode,
                    f"{r['redis_delta'] / 1e6:,.1f}",
                    f"{r['blobs'] / 1e6:,.1f}",
                    f"{r['blob_fields']:,.0f}",
                    f"{r['blobs'] / distinct_bytes:.3f}",
                    f"{r['jobs']:,.0f}",
                    f"{r['job_max']:,.0f}",
                    f"{r['job_mean']:,.0f}",
                    f"{r['uploads']:,.0f}",
                    f"{r['wall_s']:.1f}",
                )
        console.print(table)
        console.print(orjson.dumps(results).decode())


if __name__ == "__main__":
    main()
