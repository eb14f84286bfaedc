"""``cancel``, ``resume``, ``budget`` and ``delete``: changing a recorded batch (``producer.batch.control``)."""

from __future__ import annotations

import click
from redis.asyncio import Redis

from producer.batch.control import (
    BudgetSet,
    CancelResult,
    Deleted,
    ShadowBudgetError,
    cancel,
    delete,
    resume,
    set_budget,
)
from producer.batch.status import read_status
from producer.cli.common import FiniteFloatRange, err, load_settings, run_in_redis
from producer.cli.status_view import budget_part
from producer.submit.attachments import uploader_for
from store.keys import Keys


@click.command("cancel")
@click.argument("batch_id", metavar="BATCH")
def cancel_command(batch_id: str) -> None:
    """Stop the batch: lines not started end as cancelled; lines already running finish."""
    settings = load_settings()

    async def body(redis: Redis, keys: Keys) -> CancelResult:
        record = await read_status(redis, keys, batch_id)
        price = settings.price_for(record.spec.model)
        return await cancel(redis, keys, batch_id, price=price, price_of=settings.price_for)

    result = run_in_redis(settings, body)
    err.print(
        f"cancelled {batch_id}: {result.waiting} waiting line(s) and {result.never_enqueued} never-enqueued line(s) "
        "recorded as cancelled; running ones will finish"
    )
    if result.at_provider:
        err.print(
            f"{result.at_provider} line(s) are in provider batches (the Batch API): the workers cancel those "
            "batches; what they answered before is recorded (it was billed), the rest ends cancelled"
        )
    if result.shadow is not None and result.shadow.result is None:
        err.print(f"its shadow batch {result.shadow.batch_id} was not recorded yet: it will not be made")
    elif result.shadow is not None and result.shadow.result is not None:
        shadow = result.shadow.result
        err.print(
            f"cancelled its shadow batch {result.shadow.batch_id} too: {shadow.waiting} waiting line(s) and "
            f"{shadow.never_enqueued} never-enqueued line(s) recorded as cancelled"
        )


@click.command("resume")
@click.argument("batch_id", metavar="BATCH")
def resume_command(batch_id: str) -> None:
    """Go on with a batch that paused on a batch-wide error (a bad key, an unknown model ...), once it is fixed."""
    resumed = run_in_redis(load_settings(), lambda redis, keys: resume(redis, keys, batch_id))
    if resumed.reason is None:
        err.print(f"batch {batch_id} is not paused; {resumed.rescheduled} waiting line(s) made due now")
    else:
        err.print(
            f"resumed {batch_id} (it was paused: {resumed.reason}); {resumed.rescheduled} waiting line(s) made due now"
        )


@click.command("budget")
@click.argument("batch_id", metavar="BATCH")
@click.option("--usd", type=FiniteFloatRange(min=0), help="The batch's budget in dollars (0 removes it).")
@click.option("--tokens", type=click.IntRange(min=0), help="The batch's budget in tokens (0 removes it).")
def budget_command(batch_id: str, usd: float | None, tokens: int | None) -> None:
    """Set (raise) a batch's budget; a batch paused by its budget goes on at once."""
    if usd is None and tokens is None:
        raise click.UsageError("give --usd and/or --tokens")

    async def body(redis: Redis, keys: Keys) -> BudgetSet:
        try:
            return await set_budget(redis, keys, batch_id, usd=usd, tokens=tokens)
        except ShadowBudgetError as exc:
            raise click.UsageError(str(exc)) from exc

    done = run_in_redis(load_settings(), body)
    parts = [f"${usd:,.4f}" if usd else None, f"{tokens:,} tokens" if tokens else None]
    said = " and ".join(p for p in parts if p) or "none"
    if done.shadow_id is None:
        err.print(f"batch {batch_id}: budget {said}")
    else:
        shadow = (
            f"{done.shadow_id} {budget_part(done.shadow.record)}"
            if done.shadow is not None
            else (f"{done.shadow_id} (not recorded yet) takes its part when it is")
        )
        err.print(
            f"batch {batch_id}: budget {said} for it and its shadow batch together, split by their estimates: "
            f"{batch_id} {budget_part(done.main.record)}, {shadow}"
        )
    for change in (done.main, done.shadow):
        if change is not None and change.lifted is not None:
            err.print(
                f"resumed {change.record.batch_id} (it was paused: {change.lifted}); {change.rescheduled} waiting "
                "line(s) made due now"
            )


@click.command("delete")
@click.argument("batch_id", metavar="BATCH")
def delete_command(batch_id: str) -> None:
    """Remove every key of the batch from Redis (record, index, results, waiting jobs). Collect first."""
    settings = load_settings()

    async def body(redis: Redis, keys: Keys) -> Deleted:
        uploader = uploader_for(settings)
        try:
            return await delete(redis, keys, batch_id, uploader=uploader)
        finally:
            if uploader is not None:
                await uploader.close()

    deleted = run_in_redis(settings, body)
    files = f"; {deleted.files_deleted} uploaded file(s) deleted at the provider" if deleted.files_deleted else ""
    err.print(f"deleted batch {batch_id} ({deleted.waiting} waiting job(s) taken off the queue{files})")
    if deleted.files_left:
        err.print(
            f"[yellow]warning[/yellow]: {len(deleted.files_left)} uploaded file(s) were not deleted "
            "(a running worker's uploads sweep deletes them; they expire 30 days after upload in any case): "
            + ", ".join(deleted.files_left[:10]),
            markup=True,
        )
