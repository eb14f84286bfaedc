"""Every Redis key the service uses, in one place.

All keys share a configurable prefix (``Settings.key_prefix``, default ``extract:``) except arq's own job
keys (``arq:job:*``, ``arq:in-progress:*``, ``arq:retry:*``, ``arq:result:*``), whose prefix arq fixes.

| key | type | what |
| --- | --- | --- |
| ``{p}queue`` | zset | arq's queue for our jobs (score = due time in ms) |
| ``{p}batch:{id}`` | hash | batch record: ``spec`` (JSON), ``total``, ``created_at``, counters per status |
| ``{p}batch:{id}:order`` | list | custom_ids in input order, for ``collect`` |
| ``{p}batch:{id}:results`` | stream | one entry per recorded result, field ``r`` = the result line (JSON) |
| ``{p}batch:{id}:recorded`` | hash | custom_id → stream entry id: the guard that records each id once |
| ``{p}batch:{id}:usage:{custom_id}`` | hash | usage billed so far by a job's tries, folded into its result |
| ``{p}batch:{id}:ids`` | set | every custom_id submitted: what makes a repeated submit enqueue nothing new |
| ``{p}batch:{id}:lines`` | hash | custom_id → the line's job (JSON), kept for ``producer retry`` |
| ``{p}cache:{fingerprint}`` | string | result cache: a succeeded line's output, shared across batches, with a TTL |
| ``{p}inflight:{fingerprint}`` | string | coalescing lease: the job currently calling the API for this fingerprint |
| ``{p}batches`` | zset | batch ids by creation time |
| ``{p}health:{worker}`` | string | per-worker arq health line |
| ``{p}rl:{scope}`` | hash | admission buckets of one limit scope (API key hash + model): levels, cool-down, fill rate |
| ``{p}rl:resv:{id}`` | string | one admission reservation (tokens reserved), deleted when settled: settles once |
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix. Cheap to build; pure string formatting."""

    prefix: str = "extract:"

    @property
    def queue(self) -> str:
        return f"{self.prefix}queue"

    @property
    def batches(self) -> str:
        return f"{self.prefix}batches"

    def batch(self, batch_id: str) -> str:
        return f"{self.prefix}batch:{batch_id}"

    def batch_order(self, batch_id: str) -> str:
        return f"{self.batch(batch_id)}:order"

    def results(self, batch_id: str) -> str:
        return f"{self.batch(batch_id)}:results"

    def recorded(self, batch_id: str) -> str:
        return f"{self.batch(batch_id)}:recorded"

    def batch_ids(self, batch_id: str) -> str:
        return f"{self.batch(batch_id)}:ids"

    def batch_lines(self, batch_id: str) -> str:
        return f"{self.batch(batch_id)}:lines"

    def cache(self, fingerprint: str) -> str:
        return f"{self.prefix}cache:{fingerprint}"

    def inflight(self, fingerprint: str) -> str:
        return f"{self.prefix}inflight:{fingerprint}"

    def job_usage(self, batch_id: str, custom_id: str) -> str:
        return f"{self.batch(batch_id)}:usage:{custom_id}"

    def health(self, worker_name: str) -> str:
        return f"{self.prefix}health:{worker_name}"

    def rate_limit(self, scope: str) -> str:
        return f"{self.prefix}rl:{scope}"

    def reservation(self, reservation_id: str) -> str:
        return f"{self.prefix}rl:resv:{reservation_id}"

    @staticmethod
    def job_id(batch_id: str, custom_id: str) -> str:
        """The arq job id of one input line: deterministic, so re-submitting finds the existing job."""
        return f"{batch_id}:{custom_id}"
