"""The part keeper: the background task on every worker that carries staged lines through provider batches.

Each run (every :data:`TICK_S`) claims what is due in the fleet's two schedules (``store.provider_batches``: a claim
is a lease, so one worker works on a part at a time and a dead worker's part is taken up when its lease lapses):

1. **seal**: a batch with staged lines becomes a part once a part's worth is staged or the oldest has waited
   ``batch_part_wait_s`` (sized by lines, bytes, and the enqueued-token limit learned);
2. **advance** a part, one step after another, each recorded before the next is taken::

       sealed --(reserve enqueued tokens; upload the input file)--> uploaded
              --(a creation slot this hour; record the intent)--> creating --(create)--> sent
       sent --(poll every batch_poll_s until terminal)--> reading --(files read; tokens released)--> done

   *Exactly once*: the intent (``creating``, with the time) is recorded before the paid create, and the provider batch
   carries the part's nonce in its metadata. A part found ``creating`` (its worker died, or the create's answer was
   lost) is looked for by that nonce first and adopted; only a part the provider does not have is created again (at
   most :data:`MAX_CREATE_ATTEMPTS` times; then its lines go on without it). An upload is found again by its name the
   same way. A provider batch the provider no longer knows (404), or an output file it no longer has, sends its
   unread lines on. The request bodies leave Redis once the provider batch exists.

   *Reading* streams the output file, then the error file: every answer (or HTTP error) goes to its line's job
   (``DELIVER``, which takes it only for a line still ``sent`` in this part: reading again after a crash changes
   nothing); every line the part ended without -- a batch-level error such as ``batch_expired``, a line in neither
   file, a completed batch without an output file, a failed batch -- is sent back to its job (``RESEND``), which
   chooses its next venue. A failed batch with ``token_limit_exceeded`` teaches the scope its limit (the tokens the
   other parts held, or half this part's) and its lines are staged again without counting a round against them.

3. A cancelled batch's parts are cancelled at the provider; what they answered before the cancel is recorded (it
   was billed), the rest is cancelled by the lines' jobs. Finished parts' files are deleted unless
   ``batch_keep_files``.

Errors: a provider error or a Redis error ends the step; the part is due again after :data:`RETRY_S` (its lease
meanwhile keeps others off), and the step is taken again from the state recorded.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Sequence
from typing import IO

import openai

from schemas.jobs import BatchSpec
from schemas.records import now_iso
from schemas.settings import WorkerSettings
from store.batches import BatchNotFoundError, BatchStore
from store.keys import BatchKeys, Keys
from store.limits import scope_id
from store.pause import PauseStore
from store.provider_batches import Part, ProviderBatchStore, part_member
from worker.metrics import WorkerMetrics
from worker.periodic import Periodic
from worker.venue.lines import ENDPOINTS, Answer, Unanswered, read_result_line
from worker.venue.provider import ProviderBatches, describe, spool

log = logging.getLogger("worker.venue")

TICK_S = 1.0
LEASE_MARGIN_S = 10.0
"""A claimed part (or staging batch) is held for one call's timeout (``request_timeout_s``) and this much more, and
renewed as a long step goes: another worker takes a part over only once a call its holder may still be making has
ended, so a create in flight is never mistaken for a lost one."""
RETRY_S = 30.0
"""A step that failed is taken again after this."""
MAX_CREATE_ATTEMPTS = 5
"""Creates of one part that failed (the provider refused, or answered nothing) before its lines go on without it."""
RESERVE_RETRY_S = 15.0
"""A part waiting for room in the enqueued-token limit looks again after this."""
STAGING_LOOK_S = 2.0
"""A batch whose staged lines are waiting for more is looked at again after this."""
DELIVER_CHUNK = 500
SETTLE_S = 2.0
"""The jobs of a read part are woken a second time after this (a job that was parking as it was woken)."""
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


class PartKeeper(Periodic):
    every_s = TICK_S
    name = "venue keeper"
    log = log

    def __init__(
        self,
        store: ProviderBatchStore,
        batches: BatchStore,
        keys: Keys,
        settings: WorkerSettings,
        provider: ProviderBatches,
        metrics: WorkerMetrics | None = None,
        *,
        api_key: str,
        endpoint: str,
    ) -> None:
        self._store = store
        self._batches = batches
        self._keys = keys
        self._settings = settings
        self._provider = provider
        self._metrics = metrics
        self._api_key = api_key
        self._endpoint = endpoint
        self._pauses = PauseStore(store.redis, keys)
        self._wakes: list[tuple[float, BatchKeys, int]] = []
        self._lease_ms = int((settings.request_timeout_s + LEASE_MARGIN_S) * 1000)

    async def run_once(self) -> None:
        now = time.monotonic()
        due, self._wakes = [w for w in self._wakes if w[0] <= now], [w for w in self._wakes if w[0] > now]
        for _, keys, number in due:
            await self._store.wake_again(keys, number)
        for batch_id in await self._store.claim_staging(lease_ms=self._lease_ms):
            await self._guarded(self._seal(batch_id), what=f"sealing batch {batch_id}", retry=None)
        for batch_id, number in await self._store.claim_parts(lease_ms=self._lease_ms):
            await self._guarded(
                self._advance(batch_id, number), what=f"part {number} of batch {batch_id}", retry=(batch_id, number)
            )

    async def _guarded(self, step: Awaitable[None], *, what: str, retry: tuple[str, int] | None) -> None:
        try:
            await step
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            # Every part of every batch on this key would meet it: the batch pauses, as synchronous calls pause it,
            # and its parts wait for `producer resume`.
            log.warning("venue keeper: %s: %s: %s; the batch pauses", what, type(exc).__name__, exc)
            if retry is not None:
                reason = f"the provider refused the Batch API call: HTTP {exc.status_code}: {exc.message}"[:500]
                keys = self._keys.batch(retry[0])
                await self._pauses.note_batch_wide(keys, reason, pause_after=1, now_iso=now_iso())
                await self._store.schedule_part(*retry, in_ms=int(RETRY_S * 1000))
        except (openai.APIError, OSError, ValueError) as exc:
            log.warning("venue keeper: %s: %s: %s; again in %.0fs", what, type(exc).__name__, exc, RETRY_S)
            if retry is not None:
                await self._store.schedule_part(*retry, in_ms=int(RETRY_S * 1000))

    # --- sealing -----------------------------------------------------------------------------------------------
    async def _seal(self, batch_id: str) -> None:
        keys = self._keys.batch(batch_id)
        spec = await self._batches.spec(batch_id)
        if spec is None:
            await self._store.seal(keys, Part(), max_lines=1, max_bytes=1, max_tokens=0, wait_ms=0)  # unindexes it
            return
        scope = self._scope(spec)
        _, learned = await self._store.queue_state(scope)
        template = Part(
            nonce=secrets.token_hex(12),
            endpoint=ENDPOINTS[spec.api],
            model=spec.model,
            scope=scope,
            sealed_ms=_now_ms(),
        )
        number = await self._store.seal(
            keys,
            template,
            max_lines=self._settings.batch_part_lines,
            max_bytes=self._settings.batch_part_bytes,
            max_tokens=min((limit for limit in (learned, self._settings.batch_queue_tokens) if limit), default=0),
            wait_ms=int(self._settings.batch_part_wait_s * 1000),
        )
        if number:
            log.info("batch %s: part %d sealed", batch_id, number)
        await self._store.look_again(batch_id, in_ms=0 if number else int(STAGING_LOOK_S * 1000))

    def _scope(self, spec: BatchSpec) -> str:
        """The enqueued-token limit's scope: the provider's queue is per model and key."""
        return scope_id(self._api_key, spec.model, self._endpoint)

    def _key_scope(self) -> str:
        """The creations-per-hour cap's scope: the provider counts creations per key, whatever the model."""
        return scope_id(self._api_key, "*", self._endpoint)

    # --- advancing a part --------------------------------------------------------------------------------------
    async def _advance(self, batch_id: str, number: int) -> None:
        keys = self._keys.batch(batch_id)
        part = await self._store.part(keys, number)
        if part is None:  # the batch is gone (deleted, expired): nothing of it is left to do here
            await self._store.retire_part(batch_id, number)
            return
        cancelled, paused = await self._batch_state(batch_id)
        if part.state in ("sealed", "uploaded") and cancelled:  # never created: nothing at the provider to wait for
            await self._end_unsent(keys, part, "batch_cancelled")
            return
        if part.state in ("sealed", "uploaded") and paused:  # no new provider batch until `producer resume`
            await self._store.schedule_part(batch_id, number, in_ms=int(RESERVE_RETRY_S * 1000))
            return
        if part.state == "sealed" and not await self._upload(keys, part):
            return
        if part.state == "uploaded" and not await self._create(keys, part):
            return
        if part.state == "creating" and not await self._recover_create(keys, part):
            return
        if part.state == "sent" and not await self._poll(keys, part, cancelled=cancelled):
            return
        if part.state == "reading":
            await self._read(keys, part)
            await self._finish(keys, part)

    async def _batch_state(self, batch_id: str) -> tuple[bool, bool]:
        """(cancelled, paused) of the batch; a batch that is gone counts as cancelled."""
        try:
            record = await self._batches.get(batch_id)
        except BatchNotFoundError:
            return True, False
        return record.cancelled_at is not None, record.paused is not None

    async def _save(self, keys: BatchKeys, part: Part) -> bool:
        saved = await self._store.save_part(keys, part)
        if not saved:  # the batch is gone: what the part held is let go
            if part.reserved:
                await self._store.release(part.scope, part_member(keys.batch_id, part.number))
            await self._store.retire_part(keys.batch_id, part.number)
        return saved

    async def _upload(self, keys: BatchKeys, part: Part) -> bool:
        """Reserve the part's enqueued tokens, then upload its input file (or find an earlier attempt's)."""
        if not part.reserved:
            member = part_member(keys.batch_id, part.number)
            if not await self._store.reserve(
                part.scope, member, part.tokens, configured=self._settings.batch_queue_tokens
            ):
                await self._store.schedule_part(keys.batch_id, part.number, in_ms=int(RESERVE_RETRY_S * 1000))
                return False
            part.reserved = True
            if not await self._save(keys, part):
                return False
        file_id = await self._provider.find_upload(part.nonce) if part.upload_tried else None
        if file_id is None:
            part.upload_tried = True
            if not await self._save(keys, part):
                return False
            ordinals = await self._store.part_ordinals(keys, part.number)
            with spool() as buffer:
                missing = await self._write_input(keys, part, ordinals, buffer)
                if missing:
                    await self._store.resend(keys, part.number, missing, "missing_body")
                buffer.seek(0)
                file_id = await self._provider.upload(part.nonce, buffer)
        part.input_file_id, part.state = file_id, "uploaded"
        return await self._save(keys, part)

    async def _write_input(self, keys: BatchKeys, part: Part, ordinals: Sequence[int], buffer: IO[bytes]) -> list[int]:
        """The part's request lines into ``buffer``; the ordinals whose body is not in Redis (none, normally)."""
        missing: list[int] = []
        for start in range(0, len(ordinals), DELIVER_CHUNK):
            chunk = ordinals[start : start + DELIVER_CHUNK]
            for ordinal, body in zip(chunk, await self._store.bodies(keys, chunk), strict=True):
                if body is None:
                    missing.append(ordinal)
                else:
                    buffer.write(body + b"\n")
            await self._store.schedule_part(keys.batch_id, part.number, in_ms=self._lease_ms)  # still ours
        return missing

    async def _create(self, keys: BatchKeys, part: Part) -> bool:
        """Record the intent, then create the provider batch (within the hour's cap)."""
        wait_ms = await self._store.create_slot(
            self._key_scope(), cap=self._settings.batch_creates_per_hour, member=part.nonce
        )
        if wait_ms:
            await self._store.schedule_part(keys.batch_id, part.number, in_ms=wait_ms)
            return False
        part.state, part.creating_ms = "creating", _now_ms()
        part.create_attempts += 1
        if not await self._save(keys, part):
            return False
        assert part.input_file_id is not None
        created = await self._provider.create(
            part.input_file_id,
            part.endpoint,
            {"extract_batch": keys.batch_id, "extract_part": str(part.number), "extract_nonce": part.nonce},
        )
        return await self._sent(keys, part, created.id, created.status)

    async def _recover_create(self, keys: BatchKeys, part: Part) -> bool:
        """A part whose create may or may not have happened: adopt the provider batch carrying its nonce, or create."""
        found = await self._provider.find_batch(part.nonce, since_s=part.creating_ms / 1000)
        if found is not None:
            log.info("batch %s: part %d re-attached to provider batch %s", keys.batch_id, part.number, found.id)
            return await self._sent(keys, part, found.id, found.status)
        if part.create_attempts >= MAX_CREATE_ATTEMPTS:  # the provider keeps refusing it: the lines go on
            part.state, part.status, part.error = "reading", "failed", "create_failed: the provider never created it"
            part.ended_ms = _now_ms()
            return await self._save(keys, part)
        part.state = "uploaded"
        return await self._create(keys, part)

    async def _sent(self, keys: BatchKeys, part: Part, provider_batch_id: str, status: str) -> bool:
        part.provider_batch_id, part.state, part.status, part.created_ms = provider_batch_id, "sent", status, _now_ms()
        if not await self._save(keys, part):
            return False
        await self._store.drop_bodies(keys, await self._store.part_ordinals(keys, part.number))
        log.info(
            "batch %s: part %d (%d lines) sent as provider batch %s",
            keys.batch_id,
            part.number,
            part.lines,
            provider_batch_id,
        )
        await self._store.schedule_part(keys.batch_id, part.number, in_ms=int(self._settings.batch_poll_s * 1000))
        return False

    async def _poll(self, keys: BatchKeys, part: Part, *, cancelled: bool) -> bool:
        assert part.provider_batch_id is not None
        if cancelled and not part.cancel_requested:
            await self._provider.cancel(part.provider_batch_id)
            part.cancel_requested = True
        try:
            seen = describe(await self._provider.retrieve(part.provider_batch_id))
        except openai.NotFoundError:  # the provider no longer has it: nothing of it can be read
            part.state, part.status, part.error = "reading", "failed", "not_found: the provider lost the batch"
            part.ended_ms = _now_ms()
            return await self._save(keys, part)
        part.status, part.counts = seen["status"], seen["counts"]
        part.output_file_id, part.error_file_id = seen["output_file_id"], seen["error_file_id"]
        if part.status in TERMINAL:
            part.state, part.ended_ms = "reading", _now_ms()
            if part.status == "failed":
                codes, messages = seen["errors"], seen["error_messages"]
                part.error = f"{codes[0]}: {messages[0]}" if codes else "failed without an error"
            return await self._save(keys, part)
        await self._save(keys, part)
        again_s = min(self._settings.batch_poll_s, 10.0) if part.cancel_requested else self._settings.batch_poll_s
        await self._store.schedule_part(keys.batch_id, part.number, in_ms=int(again_s * 1000))
        return False

    async def _read(self, keys: BatchKeys, part: Part) -> None:
        """Hand every line of the ended part its answer, or send it on (see the module note)."""
        ordinals = await self._store.part_ordinals(keys, part.number)
        if part.status == "failed":
            why = (part.error or "failed").split(":", 1)[0]
            if why == "token_limit_exceeded":
                reserved, _ = await self._store.queue_state(part.scope)
                others = reserved - part.tokens if part.reserved else reserved
                await self._store.learn_limit(part.scope, others if others > 0 else part.tokens // 2)
                log.warning(
                    "batch %s: provider batch %s hit the enqueued-token limit of %s; limit learned, lines queued again",
                    keys.batch_id,
                    part.provider_batch_id,
                    part.model,
                )
            else:
                log.warning("batch %s: provider batch %s failed: %s", keys.batch_id, part.provider_batch_id, part.error)
            part.resent += await self._store.resend(keys, part.number, ordinals, why)
            return
        seen: set[int] = set()
        provider_batch_id = part.provider_batch_id or ""
        for file_id in (part.output_file_id, part.error_file_id):
            if file_id is None:
                continue
            answers: list[tuple[int, bytes]] = []
            unanswered: dict[str, list[int]] = {}
            async for raw in self._provider.lines(file_id):  # a file the provider no longer has reads as empty
                parsed = read_result_line(raw, provider_batch_id)
                if parsed is None or parsed[0] in seen:
                    continue
                ordinal, what = parsed
                seen.add(ordinal)
                if isinstance(what, Answer):
                    answers.append((ordinal, what.to_json()))
                elif isinstance(what, Unanswered):
                    unanswered.setdefault(what.why, []).append(ordinal)
                if len(answers) >= DELIVER_CHUNK:
                    part.answered += await self._store.deliver(keys, part.number, answers)
                    answers = []
                    await self._store.schedule_part(keys.batch_id, part.number, in_ms=self._lease_ms)
            part.answered += await self._store.deliver(keys, part.number, answers)
            for why, lines in unanswered.items():
                part.resent += await self._store.resend(keys, part.number, lines, why)
        missing = [o for o in ordinals if o not in seen]
        if missing:
            log.warning(
                "batch %s: provider batch %s ended (%s) without %d of its lines in either file; they go on",
                keys.batch_id,
                provider_batch_id,
                part.status,
                len(missing),
            )
            part.missing += len(missing)
            part.resent += await self._store.resend(keys, part.number, missing, "missing")

    async def _end_unsent(self, keys: BatchKeys, part: Part, why: str) -> None:
        """A part that never reached the provider (its batch was cancelled first): its lines go back to their jobs."""
        ordinals = await self._store.part_ordinals(keys, part.number)
        part.resent += await self._store.resend(keys, part.number, ordinals, why)
        part.status = part.status or "not_sent"
        await self._finish(keys, part)

    async def _finish(self, keys: BatchKeys, part: Part) -> None:
        if part.reserved:
            await self._store.release(part.scope, part_member(keys.batch_id, part.number))
            part.reserved = False
        if not self._settings.batch_keep_files and not part.files_deleted:
            for file_id in (part.input_file_id, part.output_file_id, part.error_file_id):
                if file_id is not None:
                    await self._provider.delete_file(file_id)
            part.files_deleted = True
        part.state = "done"
        if self._metrics is not None:
            self._metrics.provider_parts_done.labels(part.status or "unknown").inc()
        await self._store.save_part(keys, part)
        await self._store.retire_part(keys.batch_id, part.number)
        log.info(
            "batch %s: part %d done (%s): %d answered, %d sent on",
            keys.batch_id,
            part.number,
            part.status,
            part.answered,
            part.resent,
        )
        self._wakes.append((time.monotonic() + SETTLE_S, keys, part.number))


def _now_ms() -> int:
    return int(time.time() * 1000)
