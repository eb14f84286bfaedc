"""``producer``: submit batches, feed them, watch them, collect their results.

The face of the library (``producer``): each command parses its options, calls the library and says the outcome;
this package is the only place that turns an error into a message and an exit code, and the only importer of
click. Its rooms: ``common`` (the console, option types, settings, running a body against Redis and saying its
errors), ``options`` (the submit options), ``submitting`` (submit, estimate, run), ``watching`` (status, list,
wait), ``collecting`` (collect, retry), ``controlling`` (cancel, resume, budget, delete), ``analysing`` (compare,
report), and the views (``status_view``, ``estimate_view``).
"""

from __future__ import annotations

import click

from producer.cli.analysing import compare_command, report_command
from producer.cli.collecting import collect_command, retry_command
from producer.cli.controlling import budget_command, cancel_command, delete_command, resume_command
from producer.cli.submitting import estimate_command, run_command, submit_command
from producer.cli.watching import list_command, status_command, wait_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="structured-extract", prog_name="producer")
def main() -> None:
    """Submit extraction batches and collect their results (Redis from REDIS_URL)."""


for command in (
    submit_command,
    estimate_command,
    status_command,
    list_command,
    wait_command,
    collect_command,
    retry_command,
    cancel_command,
    resume_command,
    budget_command,
    compare_command,
    report_command,
    delete_command,
    run_command,
):
    main.add_command(command)

__all__ = ["main"]
