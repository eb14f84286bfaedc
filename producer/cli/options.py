"""The options ``submit``, ``estimate`` and ``run`` share (each with its environment twin), and ``--format``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from producer.cli.common import FORMAT_HELP, FiniteFloatRange
from producer.input.tables import is_table_location
from schemas.jobs import RESULTS_FORMATS
from schemas.models import EFFORTS, REQUEST_TIERS
from schemas.venues import VENUE_SETTINGS


class InputArgument(click.Path):
    """INPUT: a path that exists (``-``: standard input), or tables named by an ``s3://`` URL (kept a string: a path
    would lose its ``//``) or a glob pattern, found when they are read (``producer.input.tables``: one line if not)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and is_table_location(value):
            return value if value.startswith("s3://") else Path(value)
        return super().convert(value, param, ctx)


# Every option defaults to None so that its environment twin (EXTRACT_<NAME>) applies when it is not given.
SUBMIT_OPTIONS = [
    click.argument("input_path", metavar="INPUT", type=InputArgument(exists=True, allow_dash=True, path_type=Path)),
    # Required, but not click-required: the environment twin (or a secret file, or .env) may give them instead.
    click.option(
        "--schema",
        "schema_spec",
        help="Built-in name, JSON Schema file or package.module:Class [required; or env EXTRACT_SCHEMA].",
    ),
    click.option("--model", help="Model name, e.g. gpt-4o-mini [required; or env EXTRACT_MODEL]."),
    click.option("--api", type=click.Choice(["responses", "chat"]), help="Which API [env EXTRACT_API; responses]."),
    click.option(
        "--batch-id", help="Batch id: letters, digits, '.', '_', '-' (default: the input's name and the time)."
    ),
    click.option("--instructions", help="Instructions for the model [env EXTRACT_INSTRUCTIONS]."),
    click.option(
        "--instructions-file",
        type=click.Path(exists=True, dir_okay=False),
        help="Read the instructions from a file [env EXTRACT_INSTRUCTIONS_FILE].",
    ),
    click.option("--id-field", help="Field holding the line id [env EXTRACT_ID_FIELD; custom_id]."),
    click.option("--text-field", help="Field holding the document [env EXTRACT_TEXT_FIELD; text]."),
    click.option(
        "--files-field",
        help="Field listing attachment files, paths relative to INPUT [env EXTRACT_FILES_FIELD; files].",
    ),
    click.option("--urls-field", help="Field listing http(s) or data: URLs [env EXTRACT_URLS_FIELD; urls]."),
    click.option("--file-ids-field", help="Field listing OpenAI file ids [env EXTRACT_FILE_IDS_FIELD; file_ids]."),
    click.option("--glob", help="A folder INPUT: which files are documents [env EXTRACT_GLOB; **/*]."),
    click.option(
        "--image-detail",
        type=click.Choice(["auto", "low", "high", "original"]),
        help="The detail images are sent with [env EXTRACT_IMAGE_DETAIL; auto].",
    ),
    click.option(
        "--attach",
        type=click.Choice(["inline", "upload"]),
        help="Attachments: bytes in Redis once per content (inline), or uploaded once to the Files API "
        "(upload; needs OPENAI_API_KEY) [env EXTRACT_ATTACH; inline].",
    ),
    click.option(
        "--max-output-tokens",
        type=click.IntRange(min=1),
        help="The most tokens the model may write per call (reasoning included), sent as max_output_tokens "
        "[env EXTRACT_MAX_OUTPUT_TOKENS; not sent: the model's own limit].",
    ),
    click.option(
        "--temperature",
        type=FiniteFloatRange(0, 2),
        help="Sampling temperature sent with every call [env EXTRACT_TEMPERATURE; not sent].",
    ),
    click.option(
        "--budget-tokens",
        type=click.IntRange(min=1),
        help="The most tokens (input + output) the batch may be billed; it pauses there [env EXTRACT_BUDGET_TOKENS].",
    ),
    click.option(
        "--budget-usd",
        type=FiniteFloatRange(min=0, min_open=True),
        help="The most the batch may cost; it pauses there (producer budget raises it) [env EXTRACT_BUDGET_USD].",
    ),
    click.option(
        "--reasoning-effort",
        type=click.Choice(EFFORTS),
        help="Reasoning models: the effort sent [env EXTRACT_REASONING_EFFORT; the model's default].",
    ),
    click.option(
        "--service-tier",
        type=click.Choice(REQUEST_TIERS),
        help="The service tier asked for; flex bills at half price, slower [env EXTRACT_SERVICE_TIER; not sent].",
    ),
    click.option(
        "--count-tokens",
        type=click.Choice(["estimate", "exact"]),
        help="Size each call for the rate limit and the budget by our estimate, or by the provider's input-token "
        "counter (one more request per call) [env EXTRACT_COUNT_TOKENS; estimate].",
    ),
    click.option(
        "--shadow-api",
        type=click.Choice(["responses", "chat"]),
        help="Also run a sample of the lines through this API, as the linked batch BATCH-shadow "
        "(producer compare BATCH --shadow) [env EXTRACT_SHADOW_API].",
    ),
    click.option("--shadow-model", help="... or with this model (or both) [env EXTRACT_SHADOW_MODEL]."),
    click.option(
        "--shadow-sample",
        type=FiniteFloatRange(min=0, max=1, min_open=True),
        help="The share of lines the shadow batch runs, chosen by fingerprint [env EXTRACT_SHADOW_SAMPLE; 0.1].",
    ),
    click.option(
        "--flex-fallback-after",
        "flex_fallback_after_s",
        type=FiniteFloatRange(min=0, min_open=True),
        help="Seconds a flex line may be refused for capacity before it is sent with auto "
        "[env EXTRACT_FLEX_FALLBACK_AFTER_S; never].",
    ),
    click.option(
        "--no-cache",
        is_flag=True,
        default=None,
        help="Neither reuse nor store cached answers for this batch [env EXTRACT_NO_CACHE].",
    ),
    click.option(
        "--skip-invalid",
        is_flag=True,
        default=None,
        help="Enqueue the valid lines even if some are invalid [env EXTRACT_SKIP_INVALID].",
    ),
    click.option(
        "--replace-changed",
        is_flag=True,
        default=None,
        help="Resubmit: run lines whose document changed again (new result supersedes) [env EXTRACT_REPLACE_CHANGED].",
    ),
    click.option(
        "--append",
        is_flag=True,
        default=None,
        help="Resubmit: add lines the batch does not have at its end [env EXTRACT_APPEND].",
    ),
    click.option(
        "--venue",
        type=click.Choice(VENUE_SETTINGS),
        help="Where lines are answered: sync (a call per line), batch-api (provider batches: half the price, within "
        "24 h), auto (batch-api when --deadline leaves room, else flex where offered, else sync) [env EXTRACT_VENUE; "
        "sync].",
    ),
    click.option(
        "--deadline",
        help="When every line should be final: a duration (36h, 2d, 90m) or an ISO time; what auto chooses by "
        "[env EXTRACT_DEADLINE; none].",
    ),
    click.option(
        "--results",
        metavar="URL",
        help="Where result lines go as they are made, as numbered parts: a local folder every worker sees, or "
        "s3://bucket/prefix (AWS_* variables; AWS_ENDPOINT_URL for S3-compatible stores); unset: results stay in "
        "Redis until collect [env EXTRACT_RESULTS].",
    ),
    click.option(
        "--results-format",
        type=click.Choice(RESULTS_FORMATS),
        help="Format of the result parts: jsonl, jsonl.gz or parquet (typed columns where the schema allows) "
        "[env EXTRACT_RESULTS_FORMAT; jsonl].",
    ),
    click.option(
        "--window",
        "queue_window",
        type=click.IntRange(min=1),
        help="Lines of this batch in the queue at most; the rest is fed as lines finish [env EXTRACT_QUEUE_WINDOW].",
    ),
]


def submit_options(func: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(SUBMIT_OPTIONS):
        func = option(func)
    return func


OUTPUT_FORMAT = click.option(
    "--format",
    "output_format",
    type=click.Choice(["native", "openai-batch"]),
    default="native",
    show_default=True,
    help=FORMAT_HELP,
)
