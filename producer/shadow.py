"""Shadow runs: a deterministic sample of a batch's lines, run again with another API or model, to compare the two.

``submit ... --shadow-api chat|responses`` and/or ``--shadow-model M`` (``--shadow-sample 0.1``) record a second,
linked batch, ``<batch>-shadow`` (its spec says ``shadow_of``; the main one's says ``shadow``), holding the lines whose
fingerprint in the *main* batch falls in the sample: the first 8 bytes of the fingerprint's digest, read as a
fraction of 2^64, below the sample rate. The same input and parameters give the same fingerprints, so a rerun, a
resubmit or a ``retry`` picks exactly the same lines; the shadow lines keep their custom_ids, which is how
``producer compare BATCH --shadow`` matches them.

The shadow batch is fed only once every line of the main batch is enqueued, so its jobs queue behind the main
batch's (arq takes due jobs in the order they were queued) and never delay its results; it shares the admission
controller (the same rate-limit scopes) with everything else and uses the result cache under its own fingerprints.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from producer.readers import InputLine, LineSource
from schemas.jobs import ApiKind, BatchSpec, Fingerprinter

SHADOW_SUFFIX = "-shadow"


def shadow_id(batch_id: str) -> str:
    return batch_id + SHADOW_SUFFIX


def in_sample(fingerprint: str, fraction: float) -> bool:
    """Whether a line with this (main batch) fingerprint is in a sample of ``fraction`` (0 < fraction <= 1)."""
    digest = fingerprint.removeprefix("sha256:")
    return int(digest[:16], 16) < fraction * 2**64


def shadow_spec(main: BatchSpec, *, api: ApiKind | None, model: str | None) -> BatchSpec:
    """The shadow batch's spec: the main one's with the other API and/or model, linked both ways."""
    return main.model_copy(
        update={
            "batch_id": shadow_id(main.batch_id),
            "api": api or main.api,
            "model": model or main.model,
            "shadow_of": main.batch_id,
            "shadow": None,
            "budget_usd": None,
            "budget_tokens": None,
        }
    )


@dataclass
class SampledSource:
    """The lines of ``source`` in the sample, by their fingerprint in the main batch (``main``), in order."""

    source: LineSource
    main: BatchSpec
    fraction: float
    _count: int | None = field(default=None, init=False)

    def _sampled(self) -> Iterator[InputLine]:
        fingerprint = Fingerprinter(self.main)
        for line in self.source.lines():
            if in_sample(fingerprint(line.text, line.described), self.fraction):
                yield line

    @property
    def count(self) -> int:
        if self._count is None:
            self._count = sum(1 for _ in self._sampled())
        return self._count

    first_ordinal = 0

    def lines(self) -> Iterator[InputLine]:
        return self._sampled()

    def describe(self) -> dict[str, Any] | None:
        described = self.source.describe()
        if described is None:
            return None
        return {**described, "sample": self.fraction, "sample_of": self.main.batch_id}
