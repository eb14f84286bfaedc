"""Encoding and decoding parts off the event loop, on one thread of their own.

Why one thread and not ``asyncio.to_thread``: Arrow's allocator (mimalloc) and glibc's malloc keep a heap per
thread, and a part's encoding or decoding allocates tens of megabytes of short-lived buffers. Spread over the default
pool's threads, each thread's heap ends up holding a part's worth of freed memory: ``producer collect`` of a
1,000,000-line batch peaked at 526 MB with two parts decoded at once that way. One dedicated thread reuses one heap
(about 110 MB above the process's base for a stream of 10,000-line Parquet parts, against 255 MB on the default
pool, in ``/proc/self/status`` ``VmHWM``); a part decodes in about 0.1 s, so the one thread still keeps
``collect`` well above its 50 MB/s goal while the next part decodes as this one is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from store.sink.formats import PartEncoder, PartFormat, decode_part

_PARTS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sink-parts")


async def encode_off_loop(encoder: PartEncoder, rows: Sequence[tuple[int, bytes]]) -> bytes:
    """``encoder.encode(rows)`` on the parts thread."""
    return await asyncio.get_running_loop().run_in_executor(_PARTS, encoder.encode, rows)


async def decode_off_loop(data: bytes, fmt: PartFormat) -> list[tuple[int, bytes]]:
    """``decode_part(data, fmt)`` on the parts thread."""
    return await asyncio.get_running_loop().run_in_executor(_PARTS, decode_part, data, fmt)
