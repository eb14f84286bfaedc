"""Documents as they come: folders of PDFs, images and text, attachments in JSONL lines, both APIs, both ways of
carrying the bytes (inline blobs, Files API uploads), and the worker's token estimates against the simulator's
charge."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from PIL import Image
from redis.asyncio import Redis
from reportlab.lib.pagesizes import A4, letter
from reportlab.pdfgen import canvas

from producer.cli import main as producer
from producer.input.documents import from_file
from producer.input.readers import FolderSource, LineShape, scan_input
from schemas.attachments import attachment_tokens
from schemas.jobs import ExtractionJob
from store.keys import Keys
from tests.conftest import API_KEY, REPO
from tests.helpers import sim_get
from tests.openapi_spec import validate_component
from worker.adapters.chat import ChatAdapter
from worker.adapters.responses import ResponsesAdapter
from worker.prompt import Part, first_request

COMPONENT = {"responses": "CreateResponse", "chat": "CreateChatCompletionRequest"}


# ------------------------------------------------------------------------------------------------------ documents
def png(width: int, height: int, color: tuple[int, int, int] = (200, 30, 30), fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format=fmt)
    return out.getvalue()


def pdf(pages: int = 1, size: tuple[float, float] = letter, text: str = "Invoice INV-1 total 10.00 USD") -> bytes:
    out = io.BytesIO()
    page = canvas.Canvas(out, pagesize=size, invariant=1)
    for number in range(pages):
        page.drawString(72, size[1] - 72, f"{text} page {number + 1}")
        page.showPage()
    page.save()
    return out.getvalue()


def pdf_text_pages(texts: list[str], size: tuple[float, float] = letter) -> bytes:
    """A page per text, each line of it a line of the page (real invoice text, not a repeated phrase)."""
    out = io.BytesIO()
    page = canvas.Canvas(out, pagesize=size, invariant=1)
    for text in texts:
        y = size[1] - 72
        for line in text.splitlines():
            page.drawString(72, y, line)
            y -= 14
        page.showPage()
    page.save()
    return out.getvalue()


def animated_gif() -> bytes:
    out = io.BytesIO()
    frames = [Image.new("RGB", (20, 20), (i * 60, 0, 0)) for i in range(3)]
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return out.getvalue()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """One file of every supported type, one in a subfolder."""
    root = tmp_path / "docs"
    (root / "2026-11").mkdir(parents=True)
    (root / "invoice-1.pdf").write_bytes(pdf(2))
    (root / "2026-11" / "invoice-2.pdf").write_bytes(pdf(1, A4, "Invoice INV-2 total 99.50 EUR"))
    (root / "receipt.png").write_bytes(png(600, 900))
    (root / "receipt.jpg").write_bytes(png(800, 1200, fmt="JPEG"))
    (root / "receipt.webp").write_bytes(png(300, 300, fmt="WEBP"))
    (root / "receipt.gif").write_bytes(png(64, 64, fmt="GIF"))
    (root / "note.txt").write_text("Invoice INV-3 from ACME, total 12.00 USD")
    (root / "note.md").write_text("# Invoice INV-4\n\nTotal: 5.00 USD")
    (root / "note.json").write_text('{"invoice": "INV-5", "total": 7}')
    (root / "note.html").write_text("<p>Invoice INV-6, total 8 USD</p>")
    (root / ".hidden.png").write_bytes(png(10, 10))
    return root


SUPPORTED = [
    "2026-11/invoice-2.pdf",
    "invoice-1.pdf",
    "note.html",
    "note.json",
    "note.md",
    "note.txt",
    "receipt.gif",
    "receipt.jpg",
    "receipt.png",
    "receipt.webp",
]


def _submit(args: list[str], **env: str) -> Any:
    return _cli(["submit", *args], **env)


def _cli(args: list[str], **env: str) -> Any:
    return CliRunner().invoke(producer, args, env={"OPENAI_API_KEY": API_KEY, **env})


async def _acli(args: list[str], **env: str) -> Any:
    """The CLI from an async test: it runs its own event loop, so in a thread (the simulator serves from this one)."""
    return await asyncio.to_thread(_cli, args, **env)


# ------------------------------------------------------------------------------------------------------- reading
def test_a_folder_is_one_document_per_file_in_path_order(folder: Path) -> None:
    source = FolderSource.open(folder)
    assert source.scan.error_count == 0, source.scan.errors
    lines = list(source.lines())
    assert [line.custom_id for line in lines] == SUPPORTED  # hidden files left out, subfolders walked
    by_id = {line.custom_id: line for line in lines}
    pdf_line = by_id["invoice-1.pdf"].described
    assert pdf_line[0].kind == "pdf"
    assert pdf_line[0].pages == ((612.0, 792.0), (612.0, 792.0))
    assert pdf_line[0].text_tokens > 0
    image = by_id["receipt.jpg"].described[0]
    assert (image.kind, image.media_type, image.width, image.height) == ("image", "image/jpeg", 800, 1200)
    assert by_id["note.txt"].text.startswith("Invoice INV-3")
    assert not by_id["note.txt"].attachments
    assert [line.custom_id for line in FolderSource.open(folder, glob="*.pdf").lines()] == ["invoice-1.pdf"]


def test_each_refused_file_is_reported_with_its_path_and_reason(folder: Path) -> None:
    (folder / "contract.docx").write_bytes(b"PK\x03\x04 not really")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    (folder / "moving.gif").write_bytes(animated_gif())
    (folder / "fake.png").write_bytes(b"these are not pixels")
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (folder / "empty.md").write_text("  \n")
    (folder.parent / "secret.txt").write_text("not for the provider")
    (folder / "link.txt").symlink_to(folder.parent / "secret.txt")
    source = FolderSource.open(folder)
    reasons = {error.where: error.reason for error in source.scan.errors}
    assert reasons["contract.docx"].startswith("unsupported file type '.docx' (supported: gif, htm, html, jpeg, jpg")
    assert reasons["broken.pdf"].startswith("the file: not a readable PDF")
    assert reasons["moving.gif"] == "the file: an animated GIF; the API takes only non-animated GIFs"
    assert reasons["fake.png"].startswith("the file: neither a PDF nor an image the API takes")
    assert reasons["latin1.txt"].startswith("not UTF-8 text")
    assert reasons["empty.md"] == "the file is empty"
    assert reasons["link.txt"] == "a symlink to a file outside the folder"
    assert source.count == len(SUPPORTED)


def test_the_cli_reports_refused_files_by_path_and_enqueues_nothing(cli_env: Any, folder: Path) -> None:
    (folder / "contract.docx").write_bytes(b"x")
    result = _submit([str(folder), "--schema", "invoice", "--model", "gpt-4o-mini", "--batch-id", "f1"])
    assert result.exit_code == 2, result.output
    assert f"error {folder / 'contract.docx'}: unsupported file type '.docx'" in result.stderr
    assert "1 invalid line(s); nothing was enqueued" in result.stderr
    assert not cli_env.exists("test:batch:f1")


def test_size_limits_are_the_apis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import producer.input.documents as documents

    path = tmp_path / "big.pdf"
    path.write_bytes(pdf(1))
    monkeypatch.setattr(documents, "MAX_FILE_BYTES", 100)
    with pytest.raises(documents.AttachmentError, match=r"over the API's 50 MB limit for a file"):
        from_file(path, shown="big.pdf")


def test_jsonl_lines_carry_files_urls_and_file_ids(tmp_path: Path) -> None:
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "a.png").write_bytes(png(100, 50))
    (tmp_path / "scans" / "b.pdf").write_bytes(pdf(3))
    data_url = "data:image/png;base64," + base64.b64encode(png(40, 40)).decode()
    lines = [
        {"custom_id": "1", "text": "see the scans", "files": ["scans/a.png", "scans/b.pdf"]},
        {"custom_id": "2", "urls": [data_url, "https://example.com/r.jpg", "https://example.com/doc.pdf"]},
        {"custom_id": "3", "file_ids": ["file-abc123", {"id": "file-img456", "kind": "image"}]},
        {"custom_id": "4", "files": "scans/missing.png"},
        {"custom_id": "5", "urls": ["https://example.com/page"]},
        {"custom_id": "6", "file_ids": ["not-a-file-id"]},
        {"custom_id": "7"},
        {"custom_id": "8", "files": ["../outside.png"]},
        {"custom_id": "9", "files": ["/etc/hostname"]},
    ]
    raw = [orjson.dumps(line) for line in lines]
    scan = scan_input(lambda: raw, shape=LineShape(base_dir=tmp_path))
    reasons = {error.line: error.reason for error in scan.errors}
    assert reasons[4] == "files[0] 'scans/missing.png': no such file"
    assert reasons[5].startswith("urls[0] 'https://example.com/page': cannot tell what the URL is from its name")
    assert reasons[6].startswith("file_ids[0]: a file id looks like 'file-abc123'")
    assert reasons[7].startswith("missing text field 'text'")
    assert reasons[8].startswith("files[0] '../outside.png': outside the input file's folder")
    assert reasons[9].startswith("files[0] '/etc/hostname': outside the input file's folder")
    assert scan.count == 3
    from producer.input.readers import valid_lines

    kept = {
        line.custom_id: line
        for line in valid_lines(raw, fmt="native", shape=LineShape(base_dir=tmp_path), skip=scan.invalid_lines)
    }
    first = kept["1"].described
    assert [(a.kind, a.source, a.pages and len(a.pages)) for a in first] == [("image", "blob", ()), ("pdf", "blob", 3)]
    second = kept["2"].described
    assert [(a.kind, a.source) for a in second] == [("image", "blob"), ("image", "url"), ("pdf", "url")]
    assert kept["2"].text == ""
    third = kept["3"].described
    assert [(a.kind, a.source, a.ref) for a in third] == [
        ("pdf", "file_id", "file-abc123"),
        ("image", "file_id", "file-img456"),
    ]


def test_chat_completions_refuses_a_pdf_by_url_and_an_image_by_file_id(tmp_path: Path) -> None:
    raw = [
        orjson.dumps({"custom_id": "1", "urls": ["https://example.com/doc.pdf"]}),
        orjson.dumps({"custom_id": "2", "file_ids": [{"id": "file-img456", "kind": "image"}]}),
        orjson.dumps({"custom_id": "3", "file_ids": ["file-pdf789"]}),
    ]
    scan = scan_input(lambda: raw, shape=LineShape(api="chat"))
    reasons = {error.line: error.reason for error in scan.errors}
    assert "Chat Completions takes a PDF only as a file part (file_data or file_id), not by URL" in reasons[1]
    assert "Chat Completions takes images by URL or data: URL only, not by file id" in reasons[2]
    assert scan.count == 1


def test_batch_api_lines_with_image_and_file_parts(tmp_path: Path) -> None:
    image = "data:image/png;base64," + base64.b64encode(png(64, 32)).decode()
    document = "data:application/pdf;base64," + base64.b64encode(pdf(2)).decode()
    chat = {
        "custom_id": "c1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "the receipt"},
                        {"type": "image_url", "image_url": {"url": image}},
                        {"type": "file", "file": {"filename": "inv.pdf", "file_data": document}},
                    ],
                }
            ]
        },
    }
    scan = scan_input(lambda: [orjson.dumps(chat)], shape=LineShape(api="chat"))
    assert scan.error_count == 0, scan.errors
    from producer.input.readers import valid_lines

    (line,) = valid_lines([orjson.dumps(chat)], fmt="openai-batch", shape=LineShape(api="chat"), skip=set())
    assert line.text == "the receipt"
    assert [(a.kind, a.filename, a.width) for a in line.described] == [("image", "image", 64), ("pdf", "inv.pdf", None)]


# -------------------------------------------------------------------------------------------------- fingerprints
def test_the_fingerprint_covers_contents_not_names(tmp_path: Path) -> None:
    from schemas.jobs import Fingerprinter

    (tmp_path / "a.png").write_bytes(png(50, 50))
    (tmp_path / "b.png").write_bytes(png(50, 50))
    (tmp_path / "c.png").write_bytes(png(50, 51))
    a, b, c = (from_file(tmp_path / name, shown=name).attachment for name in ("a.png", "b.png", "c.png"))
    from tests.processes import invoice_spec

    fingerprint = Fingerprinter(invoice_spec("x"))
    assert fingerprint("", (a,)) == fingerprint("", (b,))
    assert fingerprint("", (a,)) != fingerprint("", (c,))
    assert fingerprint("", (a,)) == fingerprint("", (a.uploaded("file-1"),))  # inline or uploaded: the same work
    assert fingerprint("t") == fingerprint("t", ())  # text-only lines fingerprint as before attachments existed
    detailed = Fingerprinter(invoice_spec("x").model_copy(update={"image_detail": "low"}))
    assert detailed("", (a,)) != fingerprint("", (a,))
    assert detailed("t") == fingerprint("t")


# --------------------------------------------------------------------------------------------------------- bodies
@pytest.mark.parametrize("api", ["responses", "chat"])
def test_request_bodies_for_every_part_type_validate_against_the_openapi_spec(api: str, tmp_path: Path) -> None:
    from tests.processes import invoice_spec

    (tmp_path / "r.png").write_bytes(png(30, 30))
    (tmp_path / "d.pdf").write_bytes(pdf(1))
    image = from_file(tmp_path / "r.png", shown="r.png")
    document = from_file(tmp_path / "d.pdf", shown="d.pdf")
    parts = [
        Part(image.attachment, image.read()),
        Part(image.attachment.model_copy(update={"source": "url", "ref": "https://example.com/r.png"})),
        Part(document.attachment, document.read()),
        Part(document.attachment.uploaded("file-abc123")),
    ]
    if api == "responses":
        parts += [
            Part(image.attachment.uploaded("file-img123")),
            Part(document.attachment.model_copy(update={"source": "url", "ref": "https://example.com/d.pdf"})),
        ]
    spec = invoice_spec("x").model_copy(update={"api": api, "image_detail": "high"})
    request = first_request(spec, "the scans", store=False, parts=tuple(parts))
    adapter = ResponsesAdapter(None) if api == "responses" else ChatAdapter(None)  # type: ignore[arg-type]
    body = adapter.build_body(request)
    validate_component(COMPONENT[api], body)
    content = body["input"][1]["content"] if api == "responses" else body["messages"][1]["content"]
    kinds = [item["type"] for item in content]
    if api == "responses":
        assert kinds == [
            "input_text",
            "input_image",
            "input_image",
            "input_file",
            "input_file",
            "input_image",
            "input_file",
        ]
        assert content[1]["image_url"].startswith("data:image/png;base64,")
        assert content[1]["detail"] == "high"
        assert content[3]["filename"] == "d.pdf"
        assert content[3]["file_data"].startswith("data:application/pdf;base64,")
        assert content[4] == {"type": "input_file", "file_id": "file-abc123"}
        assert content[6] == {"type": "input_file", "file_url": "https://example.com/d.pdf"}
    else:
        assert kinds == ["text", "image_url", "image_url", "file", "file"]
        assert content[4] == {"type": "file", "file": {"file_id": "file-abc123"}}
    first_message = body["input"][0] if api == "responses" else body["messages"][0]
    assert first_message["content"] == spec.instructions  # the shared prefix first, the document's parts last


# ------------------------------------------------------------------------------------------------------ end to end
async def _collected(tmp_path: Path, batch_id: str) -> dict[str, dict[str, Any]]:
    out = tmp_path / f"{batch_id}.jsonl"
    result = await _acli(["collect", batch_id, "--out", str(out)])
    assert result.exit_code in (0, 4), result.output
    return {row["custom_id"]: row for row in map(orjson.loads, out.read_bytes().splitlines())}


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_a_folder_of_every_type_runs_end_to_end(
    api: str, folder: Path, cli_env: Any, settings: Any, sim: Any, run_worker: Any, tmp_path: Path
) -> None:
    args = [str(folder), "--schema", "invoice", "--model", "gpt-4o", "--api", api, "--batch-id", f"docs-{api}"]
    result = await _acli(["submit", *args], OPENAI_BASE_URL=sim.base_url)
    assert result.exit_code == 0, result.output
    await run_worker()
    rows = await _collected(tmp_path, f"docs-{api}")
    assert sorted(rows) == SUPPORTED
    assert {row["status"] for row in rows.values()} == {"succeeded"}, rows
    requests = await sim_get(sim, "/_sim/requests")
    assert len(requests) >= len(SUPPORTED)
    charged = sum(int(r.get("attachment_tokens") or 0) for r in requests)
    assert charged > 0  # images and PDF pages were charged as such
    # Each attachment travelled as a reference: no job payload ever held the bytes.
    assert rows["invoice-1.pdf"]["usage"]["input_tokens"] > rows["note.txt"]["usage"]["input_tokens"]


async def test_the_same_image_under_two_names_is_paid_once(
    tmp_path: Path, cli_env: Any, settings: Any, sim: Any, run_worker: Any
) -> None:
    root = tmp_path / "same"
    root.mkdir()
    (root / "a.png").write_bytes(png(120, 80))
    (root / "b.png").write_bytes(png(120, 80))
    result = await _acli(
        ["submit", str(root), "--schema", "invoice", "--model", "gpt-4o-mini", "--batch-id", "same"],
        OPENAI_BASE_URL=sim.base_url,
    )
    assert result.exit_code == 0, result.output
    blobs = cli_env.hgetall("test:batch:same:blobs")
    assert len(blobs) == 1  # one copy of the content in Redis
    await run_worker()
    rows = await _collected(tmp_path, "same")
    assert [rows[name]["status"] for name in ("a.png", "b.png")] == ["succeeded", "succeeded"]
    assert sorted(bool(rows[name]["cache_hit"]) for name in ("a.png", "b.png")) == [False, True]
    requests = await sim_get(sim, "/_sim/requests")
    first_calls = [r for r in requests if len(r["body"]["input"]) == 2]  # a repair re-asks with more turns
    assert len(first_calls) == 1, [r["body"]["input"][-1] for r in requests]
    assert not cli_env.exists("test:batch:same:blobs")  # gone once the batch completed


async def test_jobs_carry_references_not_bytes(tmp_path: Path, cli_env: Any, sim: Any) -> None:
    root = tmp_path / "big"
    root.mkdir()
    noise = Image.effect_noise((700, 700), 90).convert("RGB")
    for i in range(3):
        out = io.BytesIO()
        noise.rotate(i * 90).save(out, format="PNG")
        (root / f"scan-{i}.png").write_bytes(out.getvalue())
    result = await _acli(
        ["submit", str(root), "--schema", "invoice", "--model", "gpt-4o-mini", "--batch-id", "refs"],
        OPENAI_BASE_URL=sim.base_url,
    )
    assert result.exit_code == 0, result.output
    keys = Keys("test:")
    job_keys = list(cli_env.scan_iter("arq:job:test:refs*"))
    assert len(job_keys) == 3
    for key in job_keys:
        assert len(cli_env.get(key)) < 2000  # the job: ids and a reference (each image is over 100 KB)
    stored = cli_env.hgetall(keys.batch("refs").blobs)
    assert len(stored) == 3
    assert all(len(data) > 100_000 for data in stored.values())


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_attach_upload_uploads_each_distinct_file_once_and_delete_removes_them(
    api: str, tmp_path: Path, cli_env: Any, settings: Any, sim: Any, run_worker: Any
) -> None:
    root = tmp_path / "up"
    root.mkdir()
    (root / "one.pdf").write_bytes(pdf(1))
    (root / "copy-of-one.pdf").write_bytes(pdf(1))
    (root / "two.pdf").write_bytes(pdf(2))
    (root / "scan.png").write_bytes(png(64, 64))
    args = [str(root), "--schema", "invoice", "--model", "gpt-4o", "--api", api, "--batch-id", "up"]
    args += ["--attach", "upload"]
    # Chat Completions has no image file_id: there the image stays inline and only the PDFs are uploaded.
    uploads, inline = (3, 0) if api == "responses" else (2, 1)

    async def stored() -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = (await sim_get(sim, "/_sim/files"))["files"]
        return listed

    result = await _acli(["submit", *args], OPENAI_BASE_URL=sim.base_url)
    assert result.exit_code == 0, result.output
    assert len(await stored()) == uploads  # one.pdf and its copy are one upload
    assert {item["purpose"] for item in await stored()} == {"user_data"}
    assert cli_env.hlen("test:batch:up:blobs") == inline
    assert cli_env.hlen("test:batch:up:uploads") == uploads
    again = await _acli(["submit", *args], OPENAI_BASE_URL=sim.base_url)  # a resubmit uploads nothing again
    assert again.exit_code == 0, again.output
    assert len(await stored()) == uploads
    await run_worker()
    rows = await _collected(tmp_path, "up")
    assert {row["status"] for row in rows.values()} == {"succeeded"}, rows
    sent = [r["body"] for r in await sim_get(sim, "/_sim/requests") if r["endpoint"] != "files.create"]
    assert all("data:application/pdf" not in orjson.dumps(body).decode() for body in sent)  # PDFs went by file_id
    deleted = await _acli(["delete", "up"], OPENAI_BASE_URL=sim.base_url)
    assert deleted.exit_code == 0, deleted.output
    assert f"{uploads} uploaded file(s) deleted at the provider" in deleted.stderr
    assert await stored() == []


async def test_delete_without_a_key_says_which_uploads_are_left(
    tmp_path: Path, cli_env: Any, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "left"
    root.mkdir()
    (root / "one.pdf").write_bytes(pdf(1))
    args = ["submit", str(root), "--schema", "invoice", "--model", "gpt-4o", "--batch-id", "left", "--attach", "upload"]
    assert (await _acli(args, OPENAI_BASE_URL=sim.base_url)).exit_code == 0
    (file_id,) = [item["id"] for item in (await sim_get(sim, "/_sim/files"))["files"]]
    deleted = await asyncio.to_thread(CliRunner().invoke, producer, ["delete", "left"])
    assert deleted.exit_code == 0, deleted.output
    assert "1 uploaded file(s) were not deleted" in deleted.stderr
    assert file_id in deleted.stderr
    assert not cli_env.exists("test:batch:left")


def test_attach_upload_without_a_key_is_a_usage_error(cli_env: Any, tmp_path: Path) -> None:
    root = tmp_path / "nokey"
    root.mkdir()
    (root / "one.pdf").write_bytes(pdf(1))
    args = ["submit", str(root), "--schema", "invoice", "--model", "gpt-4o", "--attach", "upload"]
    result = CliRunner().invoke(producer, args)
    assert result.exit_code == 2
    assert "--attach upload uploads to the provider's Files API: set OPENAI_API_KEY" in result.stderr


# ------------------------------------------------------------------------------------------------------ estimates
FAMILIES = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-5",
    "o3",
    "gpt-4.1-mini",
    "gpt-5-mini",
    "gpt-5-nano",
    "o4-mini",
    "gpt-5.4",
]


@pytest.mark.parametrize("model", FAMILIES)
async def test_attachment_estimates_match_the_simulators_charge_per_family(
    model: str, tmp_path: Path, redis: Redis, settings: Any, sim: Any
) -> None:
    """Per model family, against what the simulator (its own implementation of the published formulas) charged:
    each image's tokens and each PDF page's image tokens exactly; and the worker's whole-request reservation
    (calibrated from the replies before it) against the request's input charge."""
    import openai

    from schemas.vision_tokens import pdf_page_tokens
    from tests.processes import invoice_spec
    from worker.adapters.http import HttpSender
    from worker.tokens import TokenEstimator

    sizes = [(1024, 1024), (600, 900), (2048, 4096), (3000, 1000), (640, 480)]
    items: list[tuple[str, Part]] = []
    for i, (w, h) in enumerate(sizes):
        path = tmp_path / f"i{i}.png"
        path.write_bytes(png(w, h))
        local = from_file(path, shown=path.name)
        items.append((f"image {w}x{h}", Part(local.attachment, local.read())))
    invoices = [orjson.loads(line)["text"] for line in (REPO / "examples" / "invoices.jsonl").read_bytes().splitlines()]
    for pages, size, count in ((3, letter, 1), (1, A4, 1), (5, letter, 1)):
        doc = tmp_path / f"d{pages}.pdf"
        doc.write_bytes(pdf_text_pages(invoices[pages : pages + pages * count], size))
        local = from_file(doc, shown=doc.name)
        items.append((f"pdf {pages} pages", Part(local.attachment, local.read())))
    spec = invoice_spec("est").model_copy(update={"model": model, "image_detail": "high"})
    client = openai.AsyncOpenAI(api_key=API_KEY, base_url=sim.base_url, max_retries=0)
    sender = HttpSender(client, connections=4)
    adapter = ResponsesAdapter(sender)
    estimator = TokenEstimator()
    errors: dict[str, list[float]] = {"image": [], "pdf": []}
    try:
        for n, (what, part) in enumerate(items):
            request = first_request(spec, "", store=False, parts=(part,))
            reserved, raw = estimator.estimate(request)
            reply = await adapter.call(request)
            logged = (await sim_get(sim, "/_sim/requests"))[-1]
            (charged_part,) = logged["attachments"]
            a = part.attachment
            if a.kind == "image":
                assert attachment_tokens(model, a, "high") == charged_part["tokens"], f"{model} {what}"
            else:
                ours = [pdf_page_tokens(model, w, h) for w, h in a.pages]
                assert ours == [page["image_tokens"] for page in charged_part["pages"]], f"{model} {what}"
            charged = reply.usage.input_tokens
            if n > 0:  # the first call calibrates
                errors[a.kind].append(abs(reserved - charged) / charged)
            estimator.observe(model, raw, charged)
    finally:
        await sender.close()
        await client.close()
    # Images: the formulas agree exactly, so after one reply the reservation is within 10 %. A PDF's text is counted
    # by tiktoken here and by the simulator's 4-bytes-a-token rule there (for invoice text with many numbers, cl100k
    # counts about 1.5 times as many), and one text ratio per model serves both the schema and that text: 15 %
    # (measured: 1-13 %).
    print(f"{model}: worst reservation error images {max(errors['image']):.1%}, PDFs {max(errors['pdf']):.1%}")
    assert max(errors["image"]) <= 0.10, f"{model}: image reservations off by {errors['image']}"
    assert max(errors["pdf"]) <= 0.15, f"{model}: PDF reservations off by {errors['pdf']}"


def test_a_job_with_attachments_round_trips_as_json() -> None:
    job = ExtractionJob(batch_id="b", ordinal=0, custom_id="x", text="", fingerprint="sha256:0", line=1)
    assert ExtractionJob.model_validate(orjson.loads(orjson.dumps(job.model_dump()))) == job
