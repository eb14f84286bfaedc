"""``retry`` end to end: find the batch's input again, check it is the batch's, and re-run its failed lines.

Redis keeps no text of a finished line, so the failed lines are read from the input again: the path recorded at
submit (or ``input_path``), with the shape recorded then (its fields, or the folder's glob) and the submit's own
document checks (a line submit refused is not the batch's). A file whose count of valid lines differs from the
batch's is refused as another input. A shadow batch's lines are its sample of its main batch's input, drawn again
by fingerprint. The re-run itself is :func:`producer.batch.control.retry_failed`.
"""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis

from producer.batch.control import retry_failed
from producer.errors import OptionError
from producer.input.readers import FileSource, FolderSource, LineShape, LineSource, batch_body_check
from producer.input.tables import TableSource, is_table_input
from producer.submit.attachments import uploader_for
from producer.submit.feeder import FeedResult
from producer.submit.shadow import SampledSource
from producer.submit.submit import document_check
from schemas.settings import ProducerSettings
from store.batches import BatchRecord, BatchStore
from store.keys import Keys


async def retry_batch(
    redis: Redis, keys: Keys, settings: ProducerSettings, batch_id: str, input_path: Path | str | None = None
) -> FeedResult:
    """Re-enqueue the failed lines of ``batch_id``, read from its input (see the module note)."""
    store = BatchStore(redis, keys)
    record = await store.get(batch_id)
    source: LineSource = retry_source(record, input_path, settings)
    sample = (record.input or {}).get("sample")
    if record.spec.shadow_of is not None and sample:  # a shadow batch: its sample of the main batch's input
        main = await store.get(record.spec.shadow_of)
        source = SampledSource(source, main.spec, float(sample))
    uploader = uploader_for(settings) if record.spec.attach == "upload" else None
    if record.spec.attach == "upload" and uploader is None:
        raise OptionError("batch uses --attach upload: set OPENAI_API_KEY to retry it")
    try:
        return await retry_failed(
            redis,
            keys,
            batch_id,
            source,
            window=settings.queue_window,
            chunk=settings.submit_chunk_size,
            uploader=uploader,
        )
    finally:
        if uploader is not None:
            await uploader.close()


def retry_source(
    record: BatchRecord, input_path: Path | str | None, settings: ProducerSettings
) -> FileSource | FolderSource | TableSource:
    """The batch's input, read again as it was submitted; refused when it is missing or not the batch's."""
    recorded = record.input or {}
    check = document_check(record.spec, settings)
    source: FileSource | FolderSource | TableSource
    if recorded.get("table") or (input_path is not None and is_table_input(input_path)):
        # tables: the files recorded at submit (not the glob matched again), or the --input given instead
        shape = LineShape.recorded(recorded, base_dir=None, api=record.spec.api)
        if input_path is None:
            source = TableSource.reopen(recorded, shape=shape, check=check)
        else:
            source = TableSource.open(input_path, shape=shape, check=check)
        return _checked(record, source, source.input)
    path = Path(input_path) if input_path is not None else (Path(recorded["path"]) if recorded.get("path") else None)
    if path is None or not path.exists():
        where = f" ({path} is not there)" if path is not None else ""
        raise OptionError(f"retry reads the failed lines from the batch's input: pass --input FILE{where}")
    if path.is_dir():
        source = FolderSource.open(
            path,
            glob=str(recorded.get("glob", "**/*")),
            api=record.spec.api,
            check=check,
            max_text_bytes=settings.max_document_bytes or None,
        )
    else:
        shape = LineShape.recorded(recorded, base_dir=None, api=record.spec.api)
        source = FileSource.open(path, shape=shape, check=check, batch_check=batch_body_check(record.spec))
    return _checked(record, source, path)


def _checked(
    record: BatchRecord, source: FileSource | FolderSource | TableSource, path: Path | str
) -> FileSource | FolderSource | TableSource:
    """``source``, unless its count of valid lines says it is not the batch's input."""
    if record.spec.shadow_of is None and source.scan.count != record.lines:  # a shadow batch holds a sample
        raise OptionError(
            f"{path} has {source.scan.count} valid line(s) and batch {record.batch_id} has {record.lines}: "
            "not the batch's input"
        )
    return source
