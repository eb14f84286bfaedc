"""Hostile files: whatever an input names (or a folder holds) is opened safely, and what cannot be used is a bad line.

Only regular files are read, never more than the applicable limit + 1 byte; an image whose header declares more
pixels than the ceiling is refused by name; a path that is not valid UTF-8 is refused before anything is recorded;
a bad ``--glob`` is one line; standard input (``-``) is an input like a file.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import threading
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from PIL import Image

import producer.input.documents as documents
import producer.input.readers as readers
from producer.cli import main as producer
from producer.input.documents import AttachmentError, from_file
from producer.input.readers import FileSource, FolderSource, LineShape, scan_input
from tests.conftest import API_KEY

BASE = ["--schema", "invoice", "--model", "gpt-4o-mini"]


def _cli(args: list[str], *, stdin: bytes | None = None) -> Any:
    return CliRunner().invoke(producer, args, input=stdin, env={"OPENAI_API_KEY": API_KEY})


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def declared_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of ``width`` x ``height`` blank pixels: tiny on disk, huge once decoded (a bomb when large)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def bad_name(folder: Path, raw: bytes) -> Path:
    """A path below ``folder`` whose last part is the bytes ``raw`` (not valid UTF-8)."""
    return Path(os.fsdecode(os.fsencode(folder) + b"/" + raw))


def jsonl(path: Path, *lines: dict[str, Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return path


def char_device(path: Path) -> bool:
    """Make ``path`` a node of /dev/zero's device (1, 5); False where this user may not."""
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5))
    except PermissionError:
        return False
    return True


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    """A named pipe no one writes to: opening it for reading the usual way blocks for ever."""
    path = tmp_path / "docs" / "pipe.txt"
    path.parent.mkdir(exist_ok=True)
    os.mkfifo(path)
    return path


# ---------------------------------------------------------------------------------------------- decompression bombs
def test_a_png_declaring_too_many_pixels_is_a_bad_file_and_nothing_is_recorded(cli_env: Any, tmp_path: Path) -> None:
    """The 109 KB PNG that declares 30,000 x 30,000 pixels is refused by path, with the ceiling, not a traceback."""
    docs = tmp_path / "docs"
    docs.mkdir()
    bomb = declared_png(30_000, 30_000)
    assert len(bomb) < 120_000
    (docs / "bomb.png").write_bytes(bomb)
    (docs / "ok.png").write_bytes(png(40, 30))
    result = _cli(["submit", str(docs), *BASE, "--batch-id", "bomb"])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"error {docs / 'bomb.png'}: the file: a 30,000 x 30,000 image (900,000,000 pixels)" in result.stderr
    assert f"over the ceiling of {documents.MAX_IMAGE_PIXELS:,} pixels" in result.stderr
    assert "1 invalid line(s); nothing was enqueued" in result.stderr
    assert not cli_env.exists("test:batch:bomb")


def test_an_image_at_the_pixel_ceiling_is_taken_and_one_over_it_is_refused(tmp_path: Path) -> None:
    """The ceiling is ours and exact, on either side of Pillow's own warning (an error under pytest)."""
    side = int(documents.MAX_IMAGE_PIXELS**0.5)
    under, over = tmp_path / "under.png", tmp_path / "over.png"
    under.write_bytes(declared_png(side, side))
    over.write_bytes(declared_png(side + 1, side + 1))
    assert (side + 1) ** 2 > documents.MAX_IMAGE_PIXELS >= side * side
    taken = from_file(under, shown="under.png").attachment
    assert (taken.width, taken.height) == (side, side)
    with pytest.raises(AttachmentError, match=r"^over.png: a 9,460 x 9,460 image \(89,491,600 pixels\), over the"):
        from_file(over, shown="over.png")


def test_a_bomb_in_a_data_url_or_a_files_entry_is_its_lines_error(tmp_path: Path) -> None:
    """The same check covers an image inside the line (a data: URL) and one it names, each reported on its line."""
    import base64

    bomb = declared_png(20_000, 20_000)
    (tmp_path / "bomb.png").write_bytes(bomb)
    raw = [
        orjson.dumps({"custom_id": "1", "urls": ["data:image/png;base64," + base64.b64encode(bomb).decode()]}),
        orjson.dumps({"custom_id": "2", "files": ["bomb.png"]}),
        orjson.dumps({"custom_id": "3", "text": "Invoice 3 total 4 USD"}),
    ]
    scan = scan_input(lambda: raw, shape=LineShape(base_dir=tmp_path))
    reasons = {error.line: error.reason for error in scan.errors}
    assert reasons[1].startswith("urls[0]: a 20,000 x 20,000 image (400,000,000 pixels), over the ceiling")
    assert reasons[2].startswith("files[0] 'bomb.png': a 20,000 x 20,000 image")
    assert scan.count == 1


# -------------------------------------------------------------------------------------------- names not UTF-8
def test_a_file_name_not_valid_utf8_in_a_folder_is_a_bad_line_before_anything_is_recorded(
    cli_env: Any, tmp_path: Path
) -> None:
    """b'bad\\xff.png' is reported (shown escaped), the batch is not recorded; with --skip-invalid the rest runs."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ok.txt").write_text("Invoice 1 total 3 USD")
    bad_name(docs, b"bad\xff.png").write_bytes(png(20, 20))
    result = _cli(["submit", str(docs), *BASE, "--batch-id", "names"])
    assert result.exit_code == 2, result.output
    assert "bad\\xff.png: its name is not valid UTF-8" in result.stderr
    assert not cli_env.exists("test:batch:names")

    kept = _cli(["submit", str(docs), *BASE, "--batch-id", "names", "--skip-invalid"])
    assert kept.exit_code == 0, kept.output
    assert "submitted batch names: 1 line(s)" in kept.stderr
    again = _cli(["submit", str(docs), *BASE, "--batch-id", "names", "--skip-invalid"])
    assert again.exit_code == 0, again.output  # a rerun goes on; it is not left interrupted


def test_an_input_whose_path_is_not_valid_utf8_is_refused_before_anything_is_recorded(
    cli_env: Any, tmp_path: Path
) -> None:
    """The batch records its input's path (for retry): a path that cannot be recorded is refused, not a crash."""
    folder = bad_name(tmp_path, b"in\xfe")
    folder.mkdir()
    (folder / "a.png").write_bytes(png(10, 10))
    path = jsonl(folder / "in.jsonl", {"custom_id": "1", "text": "see", "files": ["a.png"]})
    result = _cli(["submit", str(path), *BASE, "--batch-id", "inpath"])
    assert result.exit_code == 2, result.output
    assert "its path is not valid UTF-8" in result.stderr
    assert "standard input" in result.stderr
    assert not cli_env.exists("test:batch:inpath")
    docs = _cli(["submit", str(folder), *BASE, "--batch-id", "inpath"])
    assert docs.exit_code == 2, docs.output
    assert "its path is not valid UTF-8" in docs.stderr
    assert not cli_env.exists("test:batch:inpath")
    piped = _cli(["submit", "-", *BASE, "--batch-id", "inpath"], stdin=path.read_bytes().replace(b"a.png", b"x"))
    assert piped.exit_code == 2  # relative to the current directory now: 'x' is not there


# ------------------------------------------------------------------------------------------- special files
def test_a_fifo_named_in_files_is_refused_without_blocking(cli_env: Any, tmp_path: Path, fifo: Path) -> None:
    path = jsonl(tmp_path / "in.jsonl", {"custom_id": "1", "files": ["docs/pipe.txt"]}, {"custom_id": "2", "text": "x"})
    result = _cli(["submit", str(path), *BASE, "--batch-id", "fifo"])
    assert result.exit_code == 2, result.output
    assert f"{path}:1: files[0] 'docs/pipe.txt': not a regular file (a named pipe)" in result.stderr
    assert not cli_env.exists("test:batch:fifo")


def test_a_fifo_in_a_folder_is_a_bad_file_without_blocking(tmp_path: Path, fifo: Path) -> None:
    (fifo.parent / "ok.txt").write_text("Invoice 1 total 3 USD")
    source = FolderSource.open(fifo.parent)
    assert {error.where: error.reason for error in source.scan.errors} == {
        "pipe.txt": "the file: not a regular file (a named pipe)"
    }
    assert [line.custom_id for line in source.lines()] == ["ok.txt"]


def test_device_nodes_are_never_read(tmp_path: Path) -> None:
    """/dev/zero by a symlink in the folder, or as a device node in it or named by a line: refused, none read."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "zero.png").symlink_to("/dev/zero")
    (docs / "ok.txt").write_text("Invoice 1 total 3 USD")
    made = char_device(docs / "node.png") and char_device(docs / "node.txt")
    source = FolderSource.open(docs)
    reasons = {error.where: error.reason for error in source.scan.errors}
    assert reasons["zero.png"] == "a symlink to a file outside the folder"
    if made:
        assert reasons["node.png"] == "the file: not a regular file (a character device)"
        assert reasons["node.txt"] == "the file: not a regular file (a character device)"
        raw = [orjson.dumps({"custom_id": "1", "files": ["docs/node.png"]})]
        scan = scan_input(lambda: raw, shape=LineShape(base_dir=tmp_path))
        assert [e.reason for e in scan.errors] == ["files[0] 'docs/node.png': not a regular file (a character device)"]
    assert source.count == 1


def test_a_symlink_loop_or_a_nul_in_a_name_is_a_bad_line(tmp_path: Path) -> None:
    (tmp_path / "loop.png").symlink_to("loop.png")
    raw = [
        orjson.dumps({"custom_id": "1", "files": ["loop.png"]}),
        orjson.dumps({"custom_id": "2", "files": ["a\u0000b.png"]}),
    ]
    scan = scan_input(lambda: raw, shape=LineShape(base_dir=tmp_path))
    reasons = {error.line: error.reason for error in scan.errors}
    assert reasons[1].startswith("files[0] 'loop.png': cannot read it (")
    assert reasons[2] == "files[0] 'a\\x00b.png': a file name cannot contain a NUL character"
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "loop.txt").symlink_to("loop.txt")
    (loop,) = FolderSource.open(docs).scan.errors
    assert loop.reason.startswith("the file: cannot read it (")


def test_reads_stop_at_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file over its limit is refused by its size before it is read; a text file over the document limit too."""
    (tmp_path / "a.png").write_bytes(png(300, 300))
    monkeypatch.setattr(documents, "MAX_IMAGE_BYTES", 100)
    with pytest.raises(AttachmentError, match=r"^a.png: [\d,]+ bytes, over the API's 512 MB limit for images$"):
        from_file(tmp_path / "a.png", shown="a.png")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "long.txt").write_text("Invoice " * 20)
    (docs / "short.txt").write_text("Invoice 1")
    source = FolderSource.open(docs, max_text_bytes=100)
    assert [(e.where, e.reason) for e in source.scan.errors] == [
        ("long.txt", "the file: 160 bytes, over the limit of 100 bytes (EXTRACT_MAX_DOCUMENT_BYTES)")
    ]


def test_a_file_swapped_for_a_fifo_after_the_scan_is_refused_not_waited_on(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png(10, 10))
    local = from_file(tmp_path / "a.png", shown="a.png")
    (tmp_path / "a.png").unlink()
    os.mkfifo(tmp_path / "a.png")
    with pytest.raises(AttachmentError, match="not a regular file"):
        local.read()


def test_a_line_longer_than_the_limit_is_a_bad_line_read_in_bounded_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 64)
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        b'{"custom_id": "1", "text": "short"}\n'
        + b'{"custom_id": "2", "text": "'
        + b"x" * 500
        + b'"}\n'
        + b'{"custom_id": "3", "text": "short too"}\n'
        + b"y" * 1000
    )
    source = FileSource.open(path)
    assert [(e.line, e.reason) for e in source.scan.errors] == [
        (2, "longer than 64 bytes (a line is one request: the API takes at most 512 MB per request)"),
        (4, "longer than 64 bytes (a line is one request: the API takes at most 512 MB per request)"),
    ]
    assert [line.custom_id for line in source.lines()] == ["1", "3"]


# ------------------------------------------------------------------------------------------------------ --glob
@pytest.mark.parametrize(
    ("glob", "reason"),
    [
        ("/etc/*", "is an absolute path"),
        ("", "is empty"),
        ("../*", "leads out of the folder"),
    ],
)
def test_a_bad_glob_is_one_line_and_exit_2(cli_env: Any, tmp_path: Path, glob: str, reason: str) -> None:
    (tmp_path / "a.txt").write_text("Invoice 1")
    for command in ("submit", "estimate"):
        result = _cli([command, str(tmp_path), *BASE, "--glob", glob])
        assert result.exit_code == 2, result.output
        assert result.stderr.count("\n") == 1, result.stderr
        assert f"--glob {glob!r} {reason}" in result.stderr
        assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------------------------ stdin
def test_standard_input_is_an_input(cli_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``-`` reads JSONL from standard input: files relative to the current directory, bad lines as ``<stdin>:N``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.png").write_bytes(png(10, 10))
    lines = b'{"custom_id": "1", "text": "Invoice 1 total 3 USD"}\n{"custom_id": "2", "files": ["a.png"]}\n'
    result = _cli(["submit", "-", *BASE, "--batch-id", "piped"], stdin=lines)
    assert result.exit_code == 0, result.output
    assert "submitted batch piped: 2 line(s)" in result.stderr
    assert cli_env.exists("test:batch:piped")
    estimate = _cli(["estimate", "-", *BASE, "--json"], stdin=lines)
    assert estimate.exit_code == 0, estimate.output
    assert orjson.loads(estimate.stdout)
    bad = _cli(["submit", "-", *BASE, "--batch-id", "piped2"], stdin=lines + b"{not json\n")
    assert bad.exit_code == 2
    assert "error <stdin>:3: not valid JSON" in bad.stderr
    assert not cli_env.exists("test:batch:piped2")
    retry = _cli(["retry", "piped"])
    assert retry.exit_code == 2
    assert "pass --input FILE" in retry.stderr


def test_an_input_that_is_a_pipe_is_read_once_and_kept(tmp_path: Path) -> None:
    """A named pipe as INPUT (as ``<(zcat in.jsonl.gz)`` gives) is spooled: every later pass reads the same lines."""
    path = tmp_path / "in.fifo"
    os.mkfifo(path)
    lines = b"".join(orjson.dumps({"custom_id": str(n), "text": f"doc {n}"}) + b"\n" for n in range(3))

    def write() -> None:
        with path.open("wb") as pipe:
            pipe.write(lines + lines[: lines.index(b"\n") + 1])  # a duplicate: found by a second pass

    writer = threading.Thread(target=write)
    writer.start()
    source = FileSource.open(path)
    writer.join()
    assert [(e.line, e.reason) for e in source.scan.errors] == [(4, "duplicate id '0' (first on line 1)")]
    assert [line.custom_id for line in source.lines()] == ["0", "1", "2"]
    assert [line.custom_id for line in source.lines()] == ["0", "1", "2"]
    assert "path" not in (source.describe() or {})
