"""The simulator takes images and PDFs as the real API does, and charges them by the published formulas.

Over real HTTP against the conftest ``sim`` fixture (or one built with ``indirect`` configs), request bodies
checked against the official OpenAPI spec before they are sent and answers after. Every expected token count is
worked out by hand from the guides, not read back from ``simulator.vision``:

* images (images-vision guide, "Calculating costs"): tile models ``base + tiles * per_tile`` after fitting in
  2048² and a short side of at most 768 (gpt-4o 1024² high: 768² → 4 tiles → 85 + 4·170 = 765; low: 85); patch
  models ``ceil(patches * multiplier)`` (gpt-5.4 1024² high: 32·32 = 1,024 → ceil(1,228.8) = 1,229; 2048² high:
  budget 2,500 → 1600² → 2,500 → 3,000; o4-mini 1800x2400: fit 2048 → 1536x2048 → 3,072 > 1,536 → 1056x1408 →
  33·44 = 1,452 → ceil(2,497.44) = 2,498);
* PDFs (file-inputs guide): page text at ceil(bytes/4) plus one image per page at 1 px per point (our assumption),
  at ``detail`` ``auto`` = ``low`` before gpt-5.6 and ``high`` from it. The test PDF has a 612x792 page and a
  400x300 page: gpt-4o low 85 + 85, high 765 (2·2 tiles) + 255; gpt-5.4 low (2,048 px, 6,144 patches) 20·25 = 500
  → 600 and 13·10 = 130 → 156; gpt-5.5 low (fit 512²) 396x512 → 13·16 = 208 → 250, and 156; gpt-5.6 high
  (2,048 px, 2,500 patches) 600 and 156.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import math
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pypdf
import pytest
from aiohttp import web
from PIL import Image
from reportlab.pdfgen import canvas

from simulator import RunningSimulator, SimulatorConfig
from simulator.generate import document_words
from simulator.vision import family_name, image_tokens
from tests.conftest import API_KEY
from tests.openapi_spec import validate_component

AUTH = {"Authorization": f"Bearer {API_KEY}"}
MIB = 1024 * 1024

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"vendor": {"type": "string"}, "total": {"type": "number"}},
    "required": ["vendor", "total"],
    "additionalProperties": False,
}
INSTRUCTIONS = "Extract the vendor and the total due from the attached document."
PROMPT = "Here is the document."
PAGE_1_LINES = ("Invoice INV-7741 from Zanzibar Shipping Ltd", "Total due 1250.00 EUR")
PAGE_2_LINES = ("Page two: payment terms net 30",)
PAGE_1_TEXT = "Invoice INV-7741 from Zanzibar Shipping Ltd\nTotal due 1250.00 EUR\n"  # what pypdf extracts
PAGE_2_TEXT = "Page two: payment terms net 30\n"
PAGE_1_TEXT_TOKENS = 17  # 66 bytes / 4, rounded up
PAGE_2_TEXT_TOKENS = 8  # 31 bytes / 4, rounded up


def tokens(text: str) -> int:
    return math.ceil(len(text.encode()) / 4)


SCHEMA_TOKENS = tokens(orjson.dumps(SCHEMA, option=orjson.OPT_SORT_KEYS).decode())
TEXT_CHARGE = SCHEMA_TOKENS + (tokens(INSTRUCTIONS) + 4) + (tokens(PROMPT) + 4)
"""What both test bodies cost without their attachments: schema, instructions/system message, user text."""


# -- documents ----------------------------------------------------------------------------------------------------


def image_bytes(width: int, height: int, fmt: str = "PNG", mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color=128 if mode == "L" else (200, 120, 40)).save(buffer, format=fmt)
    return buffer.getvalue()


def noise_png(width: int, height: int, seed: int) -> bytes:
    """An incompressible PNG (its size is about width·height·3 bytes)."""
    pixels = hashlib.shake_256(str(seed).encode()).digest(width * height * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (64, 64), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def make_pdf(first_line: str = PAGE_1_LINES[0]) -> bytes:
    """Two pages: 612x792 pt (US Letter) and 400x300 pt, with known text."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=(612, 792), invariant=1)
    pdf.drawString(72, 720, first_line)
    pdf.drawString(72, 700, PAGE_1_LINES[1])
    pdf.showPage()
    pdf.setPageSize((400, 300))
    pdf.drawString(40, 250, PAGE_2_LINES[0])
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def data_url(data: bytes, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- bodies -------------------------------------------------------------------------------------------------------


def responses_body(parts: list[dict[str, Any]], *, model: str = "gpt-4o", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "instructions": INSTRUCTIONS,
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": PROMPT}, *parts]},
        ],
        "text": {"format": {"type": "json_schema", "name": "extraction", "schema": SCHEMA, "strict": True}},
        "store": False,
    }
    body.update(extra)
    return body


def chat_body(parts: list[dict[str, Any]], *, model: str = "gpt-4o") -> dict[str, Any]:
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": INSTRUCTIONS},
            {"role": "user", "content": [{"type": "text", "text": PROMPT}, *parts]},
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "extraction", "schema": SCHEMA, "strict": True},
        },
    }


def input_image(url: str, detail: str = "auto") -> dict[str, Any]:
    return {"type": "input_image", "image_url": url, "detail": detail}


def chat_image(url: str, detail: str = "auto") -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, "detail": detail}}


def input_pdf(data: bytes, detail: str | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {
        "type": "input_file",
        "filename": "invoice.pdf",
        "file_data": data_url(data, "application/pdf"),
    }
    if detail is not None:
        part["detail"] = detail
    return part


def chat_pdf(data: bytes) -> dict[str, Any]:
    return {"type": "file", "file": {"filename": "invoice.pdf", "file_data": data_url(data, "application/pdf")}}


def send(endpoint: str, body: dict[str, Any], *, spec_valid: bool = True) -> tuple[str, dict[str, Any]]:
    """The path for ``endpoint`` and the body, checked against the spec's request schema first."""
    path, component = {
        "responses": ("/responses", "CreateResponse"),
        "chat": ("/chat/completions", "CreateChatCompletionRequest"),
        "input_tokens": ("/responses/input_tokens", "TokenCountsBody"),
    }[endpoint]
    if spec_valid:
        validate_component(component, body)
    return path, body


# -- fixtures and HTTP --------------------------------------------------------------------------------------------


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession, sim: RunningSimulator, endpoint: str, body: dict[str, Any], *, spec_valid: bool = True
) -> tuple[int, dict[str, Any]]:
    path, checked = send(endpoint, body, spec_valid=spec_valid)
    headers = {**AUTH, "Content-Type": "application/json"}
    data = io.BytesIO(orjson.dumps(checked))  # aiohttp warns about raw bytes over 1 MB
    async with http.post(f"{sim.base_url}{path}", data=data, headers=headers) as response:
        payload = await response.json()
        status = response.status
    if status == 200 and endpoint == "responses":
        validate_component("Response", payload)
    elif status == 200 and endpoint == "chat":
        validate_component("CreateChatCompletionResponse", payload)
    elif status == 200:
        validate_component("TokenCountsResource", payload)
    else:
        validate_component("ErrorResponse", payload)
    return status, payload


async def charged(http: aiohttp.ClientSession, sim: RunningSimulator, endpoint: str, body: dict[str, Any]) -> int:
    """The input tokens a 200 was charged (``usage``), which the request log must agree with."""
    status, payload = await post(http, sim, endpoint, body)
    assert status == 200, payload
    usage = payload["usage"]
    charged_input = int(usage["prompt_tokens"] if endpoint == "chat" else usage["input_tokens"])
    assert (await last_entry(http, sim))["input_tokens"] == charged_input
    return charged_input


async def last_entry(http: aiohttp.ClientSession, sim: RunningSimulator) -> dict[str, Any]:
    async with http.get(f"{sim.url}/_sim/requests") as response:
        entries: list[dict[str, Any]] = await response.json()
    return entries[-1]


async def sim_json(http: aiohttp.ClientSession, sim: RunningSimulator, path: str) -> Any:
    async with http.get(f"{sim.url}{path}") as response:
        assert response.status == 200
        return await response.json()


def new_client(sim: RunningSimulator) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=sim.base_url, api_key=API_KEY, http_client=openai.DefaultAioHttpClient(), max_retries=0
    )


@pytest.fixture
async def client(sim: RunningSimulator) -> AsyncIterator[openai.AsyncOpenAI]:
    sdk = new_client(sim)
    yield sdk
    await sdk.close()


# -- the formulas themselves --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "width", "height", "detail", "expected"),
    [
        ("gpt-4o", 1024, 1024, "high", 765),  # 768² → 4 tiles: 85 + 4·170
        ("gpt-4o", 1024, 1024, "low", 85),
        ("gpt-4o", 1024, 1024, "auto", 765),  # auto is high on tile models
        ("gpt-4o", 2048, 4096, "high", 1105),  # 1024x2048 → 768x1536 → 6 tiles
        ("gpt-4o", 500, 300, "high", 255),  # never upscaled: 1 tile
        ("gpt-4o-mini", 1024, 1024, "low", 2833),
        ("gpt-5", 1024, 1024, "high", 630),  # 70 + 4·140
        ("o3", 1024, 1024, "high", 675),  # 75 + 4·150
        ("gpt-5.4", 1024, 1024, "high", 1229),
        ("gpt-5.4", 2048, 2048, "high", 3000),  # 4,096 patches > 2,500 → 1600² → 2,500
        ("gpt-5.4", 2048, 2048, "low", 4916),  # low: 6,144 budget, so 4,096 patches, more than high
        ("gpt-5.4-mini-2026-03-17", 1024, 1024, "auto", 1229),  # a dated snapshot; auto = high on 5.4
        ("gpt-5.5", 1024, 1024, "low", 308),  # fit 512² → 256 patches
        ("gpt-5.5", 2048, 2048, "auto", 4916),  # auto = original: 10,000 budget, 6,000 px
        ("gpt-5.6-sol", 4000, 3000, "auto", 14100),  # original, no budget: 125·94 = 11,750
        # fit 2048 → 2048x1536 = 3,072 patches > 2,500: s' = 32·57/2048 → 1824x1368 → 57·43 = 2,451
        ("gpt-5.6-sol", 4000, 3000, "high", 2942),
        ("gpt-5.2", 2048, 2048, "high", 4916),  # 6,144 budget at every detail
        ("gpt-4.1-mini", 1024, 1024, "high", 1659),  # ceil(1,024·1.62)
        ("gpt-5-mini", 1800, 2400, "high", 1743),  # 1,536 budget → 1,452 patches, ceil(1,452·1.2)
        ("gpt-5-nano", 1024, 1024, "low", 1536),  # 1,024 patches · 1.5
        ("o4-mini", 1800, 2400, "high", 2498),  # ceil(1,452·1.72)
        ("gpt-4.1-nano-2025-04-14", 1800, 2400, "auto", 3572),  # ceil(1,452·2.46)
        ("acme-vision-1", 1024, 1024, "high", 765),  # unknown models are charged as gpt-4o
    ],
)
def test_image_tokens_follow_the_published_formulas(
    model: str, width: int, height: int, detail: Any, expected: int
) -> None:
    assert image_tokens(model, width, height, detail) == expected


def test_model_names_match_exactly_then_by_longest_family() -> None:
    assert family_name("gpt-4o-mini-2024-07-18") == "gpt-4o-mini"
    assert family_name("gpt-4o-2024-08-06") == "gpt-4o"
    assert family_name("gpt-5-mini-2025-08-07") == "gpt-5-mini"
    assert family_name("gpt-5.6-luna") == "gpt-5.6"
    assert family_name("gpt-5-chat-latest") == "gpt-5"
    assert family_name("gpt-5.1") == "gpt-5.1"
    assert family_name("gpt-4o-audio") == "gpt-4o"
    assert family_name("claude-but-not") == "gpt-4o"


# -- images on both endpoints -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "width", "height", "detail", "sizing", "expected"),
    [
        ("gpt-4o", 1024, 1024, "high", "high", 765),
        ("gpt-4o", 1024, 1024, "low", "low", 85),
        ("gpt-4o-2024-08-06", 1024, 1024, "auto", "high", 765),
        ("gpt-5.4", 1024, 1024, "high", "high", 1229),
        ("gpt-5.4", 2048, 2048, "high", "high", 3000),
        ("o4-mini", 1800, 2400, "high", "high", 2498),
        ("gpt-5.6-sol", 1024, 1024, "auto", "original", 1229),
        ("acme-vision-1", 1024, 1024, "original", "high", 765),
    ],
)
async def test_responses_input_image_is_charged_by_the_formula(
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    model: str,
    width: int,
    height: int,
    detail: str,
    sizing: str,
    expected: int,
) -> None:
    png = image_bytes(width, height)
    body = responses_body([input_image(data_url(png, "image/png"), detail)], model=model)
    assert await charged(http, sim, "responses", body) == TEXT_CHARGE + expected
    entry = await last_entry(http, sim)
    assert entry["attachment_tokens"] == expected
    [record] = entry["attachments"]
    assert record == {
        "kind": "image",
        "param": "input[0].content[1]",
        "source": "data",
        "tokens": expected,
        "detail": detail,
        "sizing": sizing,
        "bytes": len(png),
        "sha256": sha256(png),
        "media_type": "image/png",
        "filename": None,
        "width": width,
        "height": height,
    }


@pytest.mark.parametrize(
    ("model", "detail", "expected"), [("gpt-4o", "high", 765), ("gpt-4o", "low", 85), ("gpt-5.4", "auto", 1229)]
)
async def test_chat_image_url_is_charged_by_the_formula(
    sim: RunningSimulator, http: aiohttp.ClientSession, model: str, detail: str, expected: int
) -> None:
    png = image_bytes(1024, 1024)
    body = chat_body([chat_image(data_url(png, "image/png"), detail)], model=model)
    assert await charged(http, sim, "chat", body) == TEXT_CHARGE + expected
    entry = await last_entry(http, sim)
    assert entry["attachment_tokens"] == expected
    assert entry["attachments"][0]["param"] == "messages[1].content[1]"


@pytest.mark.parametrize(("fmt", "media_type"), [("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("GIF", "image/gif")])
async def test_every_supported_image_format_is_accepted(
    sim: RunningSimulator, http: aiohttp.ClientSession, fmt: str, media_type: str
) -> None:
    data = image_bytes(512, 512, fmt)
    body = responses_body([input_image(data_url(data, media_type), "high")])
    assert await charged(http, sim, "responses", body) == TEXT_CHARGE + 255  # one tile: 85 + 170
    assert (await last_entry(http, sim))["attachments"][0]["media_type"] == media_type


async def test_the_sdk_sends_images_and_gets_the_same_charge(
    sim: RunningSimulator, http: aiohttp.ClientSession, client: openai.AsyncOpenAI
) -> None:
    url = data_url(image_bytes(1024, 1024), "image/png")
    response = await client.responses.create(**send("responses", responses_body([input_image(url, "high")]))[1])
    assert response.usage is not None
    assert response.usage.input_tokens == TEXT_CHARGE + 765
    chat = await client.chat.completions.create(**send("chat", chat_body([chat_image(url, "low")]))[1])
    assert chat.usage is not None
    assert chat.usage.prompt_tokens == TEXT_CHARGE + 85
    assert (await last_entry(http, sim))["attachment_tokens"] == 85


# -- PDFs ---------------------------------------------------------------------------------------------------------


def test_the_test_pdf_reads_as_intended() -> None:
    reader = pypdf.PdfReader(io.BytesIO(make_pdf()))
    assert [page.extract_text() for page in reader.pages] == [PAGE_1_TEXT, PAGE_2_TEXT]
    assert [(float(page.mediabox.width), float(page.mediabox.height)) for page in reader.pages] == [
        (612, 792),
        (400, 300),
    ]
    assert (tokens(PAGE_1_TEXT), tokens(PAGE_2_TEXT)) == (PAGE_1_TEXT_TOKENS, PAGE_2_TEXT_TOKENS)


@pytest.mark.parametrize(
    ("endpoint", "model", "detail", "page_images", "sizing"),
    [
        ("responses", "gpt-4o", None, (85, 85), "low"),  # auto = low before gpt-5.6
        ("responses", "gpt-4o", "high", (765, 255), "high"),
        ("responses", "gpt-5.4", "auto", (600, 156), "low"),
        ("responses", "gpt-5.5", None, (250, 156), "low"),
        ("responses", "gpt-5.6-sol", None, (600, 156), "high"),  # auto = high from gpt-5.6 on
        ("chat", "gpt-4o", None, (85, 85), "low"),
        ("chat", "gpt-5.6-terra", None, (600, 156), "high"),
    ],
)
async def test_pdf_pages_are_charged_text_plus_page_images(
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    endpoint: str,
    model: str,
    detail: str | None,
    page_images: tuple[int, int],
    sizing: str,
) -> None:
    pdf = make_pdf()
    body = (
        responses_body([input_pdf(pdf, detail)], model=model)
        if endpoint == "responses"
        else chat_body([chat_pdf(pdf)], model=model)
    )
    expected = PAGE_1_TEXT_TOKENS + page_images[0] + PAGE_2_TEXT_TOKENS + page_images[1]
    assert await charged(http, sim, endpoint, body) == TEXT_CHARGE + expected
    entry = await last_entry(http, sim)
    assert entry["attachment_tokens"] == expected
    [record] = entry["attachments"]
    assert (record["kind"], record["sizing"], record["filename"], record["bytes"]) == (
        "pdf",
        sizing,
        "invoice.pdf",
        len(pdf),
    )
    assert record["pages"] == [
        {
            "width_pt": 612.0,
            "height_pt": 792.0,
            "width_px": 612,
            "height_px": 792,
            "text_tokens": PAGE_1_TEXT_TOKENS,
            "image_tokens": page_images[0],
            "tokens": PAGE_1_TEXT_TOKENS + page_images[0],
        },
        {
            "width_pt": 400.0,
            "height_pt": 300.0,
            "width_px": 400,
            "height_px": 300,
            "text_tokens": PAGE_2_TEXT_TOKENS,
            "image_tokens": page_images[1],
            "tokens": PAGE_2_TEXT_TOKENS + page_images[1],
        },
    ]
    assert (record["text_tokens"], record["image_tokens"]) == (
        PAGE_1_TEXT_TOKENS + PAGE_2_TEXT_TOKENS,
        sum(page_images),
    )


@pytest.mark.parametrize("sim_config", [SimulatorConfig(require_api_key=API_KEY, pdf_page_dpi=144)], indirect=True)
async def test_the_page_resolution_is_a_setting(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    """At 144 dpi the pages are 1224x1584 and 800x600 px: gpt-4o high 768x993 → 2·2 tiles, 768x576 → 2·2."""
    body = responses_body([input_pdf(make_pdf(), "high")])
    expected = PAGE_1_TEXT_TOKENS + 765 + PAGE_2_TEXT_TOKENS + 765
    assert await charged(http, sim, "responses", body) == TEXT_CHARGE + expected


async def test_pdf_text_is_document_text_for_faults_and_output(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{sim.url}/_sim/faults", json=[{"match": "Zanzibar", "fault": "refusal", "times": 1}]) as r:
        assert r.status == 200
    status, refused = await post(http, sim, "responses", responses_body([input_pdf(make_pdf())]))
    assert status == 200
    assert refused["output"][-1]["content"][0]["type"] == "refusal"  # the rule matched text only the PDF has

    status, first = await post(http, sim, "chat", chat_body([chat_pdf(make_pdf())]))
    assert status == 200
    answer = orjson.loads(first["choices"][0]["message"]["content"])
    words = set(document_words(f"{PROMPT}\n{PAGE_1_TEXT}\n{PAGE_2_TEXT}"))
    assert set(answer["vendor"].split()) <= words
    status, other = await post(http, sim, "chat", chat_body([chat_pdf(make_pdf("Invoice 99 from Quokka Farms"))]))
    assert status == 200
    assert other["choices"][0]["message"]["content"] != first["choices"][0]["message"]["content"]


# -- the Files API ------------------------------------------------------------------------------------------------


async def test_files_upload_retrieve_content_delete(
    sim: RunningSimulator, http: aiohttp.ClientSession, client: openai.AsyncOpenAI
) -> None:
    pdf = make_pdf()
    raw = await client.files.with_raw_response.create(file=("invoice.pdf", pdf, "application/pdf"), purpose="user_data")
    created = orjson.loads(raw.content)
    validate_component("OpenAIFile", created)
    assert re.fullmatch(r"file-[A-Za-z0-9]{24}", created["id"])
    assert {key: created[key] for key in ("object", "bytes", "filename", "purpose", "status")} == {
        "object": "file",
        "bytes": len(pdf),
        "filename": "invoice.pdf",
        "purpose": "user_data",
        "status": "processed",
    }
    assert "expires_at" not in created

    retrieved = await client.files.with_raw_response.retrieve(created["id"])
    assert orjson.loads(retrieved.content) == created
    content = await client.files.content(created["id"])
    assert content.content == pdf

    await client.files.create(file=("copy.pdf", pdf), purpose="assistants")
    listing = await sim_json(http, sim, "/_sim/files")
    assert listing["count"] == 2
    assert listing["uploads_per_sha256"] == {sha256(pdf): 2}
    assert {(f["filename"], f["bytes"], f["purpose"]) for f in listing["files"]} == {
        ("invoice.pdf", len(pdf), "user_data"),
        ("copy.pdf", len(pdf), "assistants"),
    }

    deleted = await client.files.with_raw_response.delete(created["id"])
    body = orjson.loads(deleted.content)
    validate_component("DeleteFileResponse", body)
    assert body == {"id": created["id"], "object": "file", "deleted": True}
    for call in (client.files.retrieve, client.files.delete, client.files.content):
        with pytest.raises(openai.NotFoundError) as caught:
            await call(created["id"])
        error = orjson.loads(caught.value.response.content)
        validate_component("ErrorResponse", error)
        assert error["error"]["message"] == f"No such File object: {created['id']}"
        assert error["error"]["param"] == "id"
    assert (await sim_json(http, sim, "/_sim/files"))["count"] == 1
    logged = [(entry["endpoint"], entry["status"]) for entry in await sim_json(http, sim, "/_sim/requests")]
    assert logged == [
        ("files.create", 200),
        ("files.retrieve", 200),
        ("files.content", 200),
        ("files.create", 200),
        ("files.delete", 200),
        ("files.retrieve", 404),
        ("files.delete", 404),
        ("files.content", 404),
    ]

    async with http.post(f"{sim.url}/_sim/reset") as response:
        assert response.status == 200
    assert await sim_json(http, sim, "/_sim/files") == {"files": [], "count": 0, "uploads_per_sha256": {}}


async def test_uploads_are_logged_and_expire_as_asked(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    form = aiohttp.FormData()
    form.add_field("purpose", "batch")
    form.add_field("expires_after[anchor]", "created_at")
    form.add_field("expires_after[seconds]", "3600")
    form.add_field("file", b'{"custom_id": "a"}\n', filename="lines.jsonl")
    async with http.post(f"{sim.base_url}/files", data=form, headers=AUTH) as response:
        assert response.status == 200
        created = await response.json()
    validate_component("OpenAIFile", created)
    assert created["expires_at"] == created["created_at"] + 3600
    entry = await last_entry(http, sim)
    assert (entry["endpoint"], entry["status"]) == ("files.create", 200)
    assert entry["body"] == {
        "purpose": "batch",
        "filename": "lines.jsonl",
        "bytes": 19,
        "sha256": sha256(b'{"custom_id": "a"}\n'),
    }
    assert (await sim_json(http, sim, "/_sim/ledger"))["rate_limit"]["admitted_requests"] == 0  # counts against nothing


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        (
            {"purpose": "fine-tune"},
            "purpose",
            "Invalid value: 'fine-tune'. Supported values are: 'assistants', 'batch', 'user_data', and 'vision'.",
        ),
        ({}, "purpose", "Missing required parameter: 'purpose'."),
        (
            {"purpose": "user_data", "expires_after[anchor]": "created_at", "expires_after[seconds]": "60"},
            "expires_after.seconds",
            "Invalid 'expires_after.seconds': integer out of range. Expected a value between 3600 and 2592000, "
            "but got 60 instead.",
        ),
    ],
)
async def test_bad_uploads_are_400s(
    sim: RunningSimulator, http: aiohttp.ClientSession, fields: dict[str, str], param: str, message: str
) -> None:
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("file", b"hello", filename="hello.txt")
    async with http.post(f"{sim.base_url}/files", data=form, headers=AUTH) as response:
        assert response.status == 400
        payload = await response.json()
    validate_component("ErrorResponse", payload)
    assert (payload["error"]["param"], payload["error"]["message"]) == (param, message)


async def upload(client: openai.AsyncOpenAI, name: str, data: bytes, purpose: Any = "user_data") -> str:
    return (await client.files.create(file=(name, data), purpose=purpose)).id


async def test_file_id_parts_are_charged_like_inline_data(
    sim: RunningSimulator, http: aiohttp.ClientSession, client: openai.AsyncOpenAI
) -> None:
    pdf, png = make_pdf(), image_bytes(1024, 1024)
    pdf_id, png_id = await upload(client, "invoice.pdf", pdf), await upload(client, "scan.png", png, "vision")
    pdf_charge = PAGE_1_TEXT_TOKENS + 85 + PAGE_2_TEXT_TOKENS + 85  # gpt-4o, auto = low

    parts = [{"type": "input_image", "file_id": png_id, "detail": "high"}, {"type": "input_file", "file_id": pdf_id}]
    assert await charged(http, sim, "responses", responses_body(parts)) == TEXT_CHARGE + 765 + pdf_charge
    entry = await last_entry(http, sim)
    assert [(a["kind"], a["source"], a["sha256"], a["tokens"]) for a in entry["attachments"]] == [
        ("image", "file_id", sha256(png), 765),
        ("pdf", "file_id", sha256(pdf), pdf_charge),
    ]
    inline = responses_body([input_image(data_url(png, "image/png"), "high"), input_pdf(pdf)])
    assert await charged(http, sim, "responses", inline) == TEXT_CHARGE + 765 + pdf_charge

    chat_parts = [{"type": "file", "file": {"file_id": pdf_id}}]
    assert await charged(http, sim, "chat", chat_body(chat_parts)) == TEXT_CHARGE + pdf_charge
    assert (await last_entry(http, sim))["attachments"][0]["filename"] == "invoice.pdf"


# -- POST /v1/responses/input_tokens ------------------------------------------------------------------------------


async def test_input_tokens_equals_the_charge_of_the_same_body(
    sim: RunningSimulator, http: aiohttp.ClientSession, client: openai.AsyncOpenAI
) -> None:
    pdf, png = make_pdf(), image_bytes(2048, 2048)
    pdf_id = await upload(client, "invoice.pdf", pdf)
    bodies = {
        "text only": responses_body([]),
        "image": responses_body([input_image(data_url(png, "image/png"), "high")], model="gpt-5.4"),
        "pdf inline": responses_body([input_pdf(pdf, "high")]),
        "pdf by id": responses_body([{"type": "input_file", "file_id": pdf_id, "detail": "low"}], model="gpt-5.5"),
    }
    expected = {
        "text only": TEXT_CHARGE,
        "image": TEXT_CHARGE + 3000,
        "pdf inline": TEXT_CHARGE + PAGE_1_TEXT_TOKENS + 765 + PAGE_2_TEXT_TOKENS + 255,
        "pdf by id": TEXT_CHARGE + PAGE_1_TEXT_TOKENS + 250 + PAGE_2_TEXT_TOKENS + 156,
    }
    for name, body in bodies.items():
        status, counted = await post(http, sim, "input_tokens", body)
        assert status == 200, name
        assert counted == {"object": "response.input_tokens", "input_tokens": expected[name]}, name
        entry = await last_entry(http, sim)
        assert (entry["endpoint"], entry["input_tokens"]) == ("responses.input_tokens", expected[name])
        assert await charged(http, sim, "responses", body) == expected[name], name

    # The SDK's counter, with a body that has no text.format at all: no schema to count.
    count = await client.responses.input_tokens.count(
        model="gpt-4o",
        instructions=INSTRUCTIONS,
        input=[{"type": "message", "role": "user", "content": [{"type": "input_text", "text": PROMPT}]}],
    )
    assert count.input_tokens == TEXT_CHARGE - SCHEMA_TOKENS


LIMITED = SimulatorConfig(require_api_key=API_KEY, tpm=60_000, clock=lambda: 0.0)
"""60,000 TPM, a bucket of 1,000 tokens (1 s worth), and a clock that never moves: nothing refills."""


@pytest.mark.parametrize("sim_config", [LIMITED], indirect=True)
async def test_input_tokens_does_not_take_from_the_token_bucket(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    body = responses_body([input_image(data_url(image_bytes(64, 64), "image/png"), "low")], model="gpt-4o-mini")
    for _ in range(5):
        status, counted = await post(http, sim, "input_tokens", body)
        assert status == 200
        assert counted["input_tokens"] == TEXT_CHARGE + 2833  # far over the bucket, five times over
    limits = (await sim_json(http, sim, "/_sim/ledger"))["rate_limit"]
    assert (limits["admitted_requests"], limits["admitted_tokens"]) == (0, 0)


@pytest.mark.parametrize("sim_config", [LIMITED], indirect=True)
async def test_image_tokens_count_toward_tpm(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    text_only = responses_body([], model="gpt-4o-mini", max_output_tokens=16)  # buckets are per model
    with_image = responses_body(
        [input_image(data_url(image_bytes(64, 64), "image/png"), "low")], model="gpt-4o-mini", max_output_tokens=16
    )
    status, payload = await post(http, sim, "responses", with_image)
    assert status == 200  # over the 1,000-token bucket but within the minute: admitted into debt
    assert payload["usage"]["input_tokens"] == TEXT_CHARGE + 2833
    limits = (await sim_json(http, sim, "/_sim/ledger"))["rate_limit"]
    assert limits["admitted_tokens"] == TEXT_CHARGE + 2833 + 16
    status, payload = await post(http, sim, "responses", text_only)
    assert status == 429  # the image's tokens left the bucket in debt; without them this would have fitted
    assert TEXT_CHARGE + 16 < 1000
    assert (await sim_json(http, sim, "/_sim/ledger"))["rate_limit"]["rejected_429"] == {"requests": 0, "tokens": 1}


# -- URLs ---------------------------------------------------------------------------------------------------------

ASSET_PNG = image_bytes(1024, 1024)
ASSET_PDF = make_pdf()


@pytest.fixture
async def assets() -> AsyncIterator[str]:
    """A local HTTP server with an image, a PDF, a 404 and a slow answer."""

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return web.Response(body=ASSET_PNG, content_type="image/png")

    async def png(_: web.Request) -> web.Response:
        return web.Response(body=ASSET_PNG, content_type="image/png")

    async def pdf(_: web.Request) -> web.Response:
        return web.Response(body=ASSET_PDF, content_type="application/pdf")

    app = web.Application()
    app.router.add_get("/scan.png", png)
    app.router.add_get("/invoice.pdf", pdf)
    app.router.add_get("/slow.png", slow)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


FETCHING_LOCAL = SimulatorConfig(require_api_key=API_KEY, fetch_urls=True, fetch_private=True)
"""The asset server is on 127.0.0.1: fetching is off by default and loopback needs ``fetch_private``."""


@pytest.mark.parametrize("sim_config", [FETCHING_LOCAL], indirect=True)
async def test_url_images_and_files_are_fetched(
    sim: RunningSimulator, http: aiohttp.ClientSession, assets: str
) -> None:
    body = responses_body(
        [input_image(f"{assets}/scan.png", "high"), {"type": "input_file", "file_url": f"{assets}/invoice.pdf"}]
    )
    pdf_charge = PAGE_1_TEXT_TOKENS + 85 + PAGE_2_TEXT_TOKENS + 85
    assert await charged(http, sim, "responses", body) == TEXT_CHARGE + 765 + pdf_charge
    entry = await last_entry(http, sim)
    assert [(a["kind"], a["source"], a["sha256"], a["filename"]) for a in entry["attachments"]] == [
        ("image", "url", sha256(ASSET_PNG), None),
        ("pdf", "url", sha256(ASSET_PDF), "invoice.pdf"),
    ]
    chat = chat_body([chat_image(f"{assets}/scan.png", "low")])
    assert await charged(http, sim, "chat", chat) == TEXT_CHARGE + 85


def closed_port() -> int:
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize(
    "sim_config",
    [SimulatorConfig(require_api_key=API_KEY, download_timeout_s=0.2, fetch_urls=True, fetch_private=True)],
    indirect=True,
)
async def test_urls_that_cannot_be_fetched_are_400s(
    sim: RunningSimulator, http: aiohttp.ClientSession, assets: str
) -> None:
    failing = {
        "404": f"{assets}/missing.png",
        "refused": f"http://127.0.0.1:{closed_port()}/scan.png",
        "timeout": f"{assets}/slow.png",
    }
    for name, url in failing.items():
        for endpoint, body in (
            ("responses", responses_body([input_image(url, "high")])),
            ("chat", chat_body([chat_image(url)])),
        ):
            status, payload = await post(http, sim, endpoint, body)
            assert status == 400, (name, endpoint)
            assert payload["error"] == {
                "message": f"Error while downloading {url}.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_image_url",
            }, (name, endpoint)
    status, payload = await post(
        http, sim, "responses", responses_body([{"type": "input_file", "file_url": failing["404"]}])
    )
    assert status == 400
    assert (payload["error"]["message"], payload["error"]["code"]) == (
        f"Error while downloading {failing['404']}.",
        "invalid_file_url",
    )
    ledger = await sim_json(http, sim, "/_sim/ledger")
    assert ledger["billed"]["total_tokens"] == 0
    assert ledger["rate_limit"]["admitted_requests"] == 0


# -- rejections ---------------------------------------------------------------------------------------------------

PNG_URL = data_url(image_bytes(32, 32), "image/png")
NOT_BASE64 = "data:image/png;base64,iVBOR!!not-base64!!"
EXPECTED_IMAGE = (
    "Expected a base64-encoded data URL with an image MIME type (e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU=')"
)
UNSUPPORTED_IMAGE = (
    "You uploaded an unsupported image. Please make sure your image has of one the following formats: "
    "['png', 'jpeg', 'gif', 'webp']."
)
NOT_A_PDF = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.4\nthis is not really a PDF\n").decode()

REJECTIONS: dict[str, tuple[str, list[dict[str, Any]], bool, str, str, str | None]] = {
    # name: (endpoint, parts, spec_valid, param, message, code)
    "chat file that is not a PDF": (
        "chat",
        [{"type": "file", "file": {"filename": "notes.txt", "file_data": data_url(b"hello", "text/plain")}}],
        True,
        "messages[1].content[1].file.file_data",
        "Invalid file data: 'messages[1].content[1].file.file_data'. Expected a base64-encoded data URL with an "
        "application/pdf MIME type (e.g. 'data:application/pdf;base64,SGVsbG8sIFdvcmxkIQ=='), but got "
        "unsupported MIME type 'text/plain'.",
        "invalid_value",
    ),
    "chat file_data without filename": (
        "chat",
        [{"type": "file", "file": {"file_data": data_url(make_pdf(), "application/pdf")}}],
        True,
        "messages[1].content[1].file.file_id",
        "Missing required parameter: 'messages[1].content[1].file.file_id'.",
        "missing_required_parameter",
    ),
    "responses file_data without filename": (
        "responses",
        [{"type": "input_file", "file_data": data_url(make_pdf(), "application/pdf")}],
        True,
        "input[0].content[1].filename",
        "Missing required parameter: 'input[0].content[1].filename'.",
        "missing_required_parameter",
    ),
    "chat file_url": (
        "chat",
        [{"type": "file", "file": {"file_url": "https://example.com/invoice.pdf"}}],
        True,
        "messages[1].content[1].file.file_url",
        "Unknown parameter: 'messages[1].content[1].file.file_url'.",
        "unknown_parameter",
    ),
    "responses image that is not base64": (
        "responses",
        [input_image(NOT_BASE64, "high")],
        True,
        "input[0].content[1].image_url",
        f"Invalid 'input[0].content[1].image_url'. {EXPECTED_IMAGE}, but got an invalid base64-encoded value.",
        "invalid_value",
    ),
    "chat image that is not base64": (
        "chat",
        [chat_image(NOT_BASE64)],
        True,
        "messages[1].content[1].image_url.url",
        f"Invalid 'messages[1].content[1].image_url.url'. {EXPECTED_IMAGE}, but got an invalid base64-encoded value.",
        "invalid_value",
    ),
    "empty image data": (
        "responses",
        [input_image("data:image/png;base64,", "auto")],
        True,
        "input[0].content[1].image_url",
        f"Invalid 'input[0].content[1].image_url'. {EXPECTED_IMAGE}, but got empty base64-encoded bytes.",
        "invalid_value",
    ),
    "unsupported image MIME type": (
        "responses",
        [input_image(data_url(image_bytes(8, 8), "image/heic"), "auto")],
        True,
        "input[0].content[1].image_url",
        f"Invalid 'input[0].content[1].image_url'. {EXPECTED_IMAGE}, but got unsupported MIME type 'image/heic'.",
        "invalid_value",
    ),
    "image bytes that are no image": (
        "responses",
        [input_image(data_url(b"this is text, not an image", "image/png"), "auto")],
        True,
        "input[0].content[1].image_url",
        UNSUPPORTED_IMAGE,
        "invalid_image_format",
    ),
    "a BMP sent as PNG": (
        "chat",
        [chat_image(data_url(image_bytes(8, 8, "BMP"), "image/png"))],
        True,
        "messages[1].content[1].image_url.url",
        UNSUPPORTED_IMAGE,
        "invalid_image_format",
    ),
    "animated GIF": (
        "responses",
        [input_image(data_url(animated_gif(), "image/gif"), "auto")],
        True,
        "input[0].content[1].image_url",
        UNSUPPORTED_IMAGE,
        "invalid_image_format",
    ),
    "PDF pypdf cannot open (responses)": (
        "responses",
        [{"type": "input_file", "filename": "broken.pdf", "file_data": NOT_A_PDF}],
        True,
        "input[0].content[1].file_data",
        "Invalid file data: 'input[0].content[1].file_data'. The file could not be parsed as a PDF.",
        "invalid_value",
    ),
    "PDF pypdf cannot open (chat)": (
        "chat",
        [{"type": "file", "file": {"filename": "broken.pdf", "file_data": NOT_A_PDF}}],
        True,
        "messages[1].content[1].file.file_data",
        "Invalid file data: 'messages[1].content[1].file.file_data'. The file could not be parsed as a PDF.",
        "invalid_value",
    ),
    "unknown file_id (responses file)": (
        "responses",
        [{"type": "input_file", "file_id": "file-doesnotexist00000000000"}],
        True,
        "input[0].content[1].file_id",
        "No such File object: file-doesnotexist00000000000",
        None,
    ),
    "unknown file_id (responses image)": (
        "responses",
        [{"type": "input_image", "file_id": "file-doesnotexist00000000000", "detail": "auto"}],
        True,
        "input[0].content[1].file_id",
        "No such File object: file-doesnotexist00000000000",
        None,
    ),
    "unknown file_id (chat)": (
        "chat",
        [{"type": "file", "file": {"file_id": "file-doesnotexist00000000000"}}],
        True,
        "messages[1].content[1].file.file_id",
        "No such File object: file-doesnotexist00000000000",
        None,
    ),
    "chat detail original": (
        "chat",
        [chat_image(PNG_URL, "original")],
        False,  # the chat schema's detail enum has no "original"
        "messages[1].content[1].image_url.detail",
        "Invalid value: 'original'. Supported values are: 'auto', 'low', and 'high'.",
        "invalid_value",
    ),
}


@pytest.mark.parametrize(
    ("endpoint", "parts", "spec_valid", "param", "message", "code"), list(REJECTIONS.values()), ids=list(REJECTIONS)
)
async def test_bad_parts_are_rejected_like_the_real_api(
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    endpoint: str,
    parts: list[dict[str, Any]],
    spec_valid: bool,
    param: str,
    message: str,
    code: str | None,
) -> None:
    body = responses_body(parts) if endpoint == "responses" else chat_body(parts)
    status, payload = await post(http, sim, endpoint, body, spec_valid=spec_valid)
    assert status == 400
    assert payload["error"] == {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    entry = await last_entry(http, sim)
    assert (entry["status"], entry["input_tokens"], entry["attachments"]) == (400, None, [])
    assert (await sim_json(http, sim, "/_sim/ledger"))["billed"]["total_tokens"] == 0


async def test_a_chat_file_id_must_be_a_pdf(
    sim: RunningSimulator, http: aiohttp.ClientSession, client: openai.AsyncOpenAI
) -> None:
    text_id = await upload(client, "notes.txt", b"plain notes, not a PDF")
    status, payload = await post(http, sim, "chat", chat_body([{"type": "file", "file": {"file_id": text_id}}]))
    assert status == 400
    assert payload["error"]["param"] == "messages[1].content[1].file.file_id"
    assert payload["error"]["message"] == (
        "Invalid file: 'messages[1].content[1].file.file_id'. Chat Completions accepts only PDF files as file "
        f"content parts, but {text_id} is not a PDF."
    )
    # The Responses API reads a text file as text: 22 bytes, 6 tokens.
    body = responses_body([{"type": "input_file", "file_id": text_id}])
    assert await charged(http, sim, "responses", body) == TEXT_CHARGE + 6


async def test_an_image_over_30000_patches_is_refused(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    """gpt-5.6 at ``auto`` (= original) keeps a 5600² image whole: 175² = 30,625 patches, over the 30,000 cap."""
    png = image_bytes(5600, 5600, mode="L")
    status, payload = await post(
        http, sim, "responses", responses_body([input_image(data_url(png, "image/png"), "auto")], model="gpt-5.6-sol")
    )
    assert status == 400
    assert payload["error"]["param"] == "input[0].content[1].image_url"
    assert payload["error"]["message"] == (
        "Invalid 'input[0].content[1].image_url': at detail 'original' this 5600x5600 image needs 30625 patches, "
        "more than the 30,000 allowed per image. Resize it and try again."
    )
    status, _ = await post(  # at high it is resized to the 2,500-patch budget and taken
        http, sim, "responses", responses_body([input_image(data_url(png, "image/png"), "high")], model="gpt-5.6-sol")
    )
    assert status == 200


async def test_a_file_over_50_mb_is_refused_at_the_real_limit(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """A 50 MiB + 1 byte PDF (a 70 MB request body) reaches the check: the body limit is no longer 1 MB."""
    big = b"%PDF-1.4\n" + bytes(50 * MIB + 1 - 9)
    body = responses_body(
        [{"type": "input_file", "filename": "big.pdf", "file_data": data_url(big, "application/pdf")}]
    )
    status, payload = await post(http, sim, "responses", body, spec_valid=False)  # too big to be worth validating
    assert status == 400
    assert payload["error"] == {
        "message": f"Invalid 'input[0].content[1].file_data': the file is {50 * MIB + 1} bytes, and each file must "
        "be under 50 MB.",
        "type": "invalid_request_error",
        "param": "input[0].content[1].file_data",
        "code": "file_too_large",
    }


SMALL_LIMITS = SimulatorConfig(require_api_key=API_KEY, max_request_file_bytes=3000, max_request_image_bytes=100_000)


@pytest.mark.parametrize("sim_config", [SMALL_LIMITS], indirect=True)
async def test_request_totals_for_files_and_images_are_enforced(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    pdf = make_pdf()
    assert 1500 < len(pdf) <= 3000  # one fits the (lowered) combined limit, two do not
    status, _ = await post(http, sim, "responses", responses_body([input_pdf(pdf)]))
    assert status == 200
    status, payload = await post(http, sim, "chat", chat_body([chat_pdf(pdf), chat_pdf(pdf)]))
    assert status == 400
    assert payload["error"]["param"] == "messages[1].content[2].file.file_data"
    assert payload["error"]["code"] == "file_too_large"
    assert payload["error"]["message"] == (
        f"Invalid 'messages[1].content[2].file.file_data': the files in this request come to {2 * len(pdf)} bytes, "
        "over the combined limit of 3000 bytes across all files in the request."
    )

    first, second = noise_png(150, 150, 1), noise_png(150, 150, 2)
    assert len(first) + len(second) > 100_000 > len(first)
    parts = [input_image(data_url(first, "image/png"), "low"), input_image(data_url(second, "image/png"), "low")]
    status, payload = await post(http, sim, "responses", responses_body(parts))
    assert status == 400
    assert payload["error"]["param"] == "input[0].content[2].image_url"
    assert payload["error"]["code"] == "image_too_large"
    assert f"come to {len(first) + len(second)} bytes" in payload["error"]["message"]
