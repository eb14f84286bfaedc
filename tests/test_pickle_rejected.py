"""A pickle planted in the queue is never unpickled: arq's deserializer is ours (JSON only)."""

from __future__ import annotations

import os
import pickle  # noqa: TID251 - building the hostile payload is the point of this test
import time
from pathlib import Path

from arq.constants import job_key_prefix, result_key_prefix

from schemas.results import Status
from tests.helpers import results_by_id


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


async def test_pickled_job_payload_is_rejected_not_executed(
    redis, keys, submit_batch, run_worker, tmp_path, caplog
) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"t": 1, "f": "extract", "a": (_Exploit(marker),), "k": {}, "et": 0})
    await redis.psetex(job_key_prefix + "evil", 60_000, payload)
    await redis.zadd(keys.queue, {"evil": int(time.time() * 1000)})  # arq skips a score of 0
    await submit_batch({"ok": "Invoice 1 from ACME, total 10 USD."})

    await run_worker()

    assert not marker.exists(), "the pickle was executed"
    # The honest job next to it still ran; arq failed the planted one without running it and kept nothing of it.
    assert (await results_by_id(redis, keys, "b1"))["ok"].status is Status.SUCCEEDED
    assert any("deserializing job evil failed" in r.getMessage() for r in caplog.records)
    assert not await redis.exists(job_key_prefix + "evil", result_key_prefix + "evil")
    assert await redis.zcard(keys.queue) == 0
