"""The producer as a library: submit batches, follow them, collect, control and analyse them, without click.

Four wings and a face::

    producer/cli/           the click group and commands, options, rendering; the ONLY place that turns an error
                            into a message and an exit code, and the only importer of click (no file over 300 lines)
    producer/errors.py      one ProducerError tree; each class carries its exit code
    producer/input/         reading the user's input (readers, documents): no Redis
    producer/submit/        writing a batch into Redis: the plan (every check before Redis), carrying it out (the
                            batch, then its shadow), submit, the line index, the feeder, resubmits, shadow batches,
                            attachments (stored or uploaded), the estimate
    producer/batch/         reading and changing a recorded batch: status, wait, collect (streamed), control, retry
                            (its input found and checked again)
    producer/analysis/      pure: result lines in, tables/JSON/HTML out (compare, report)

The rule (held by ``tests/test_import_graph.py``): ``cli -> {batch, submit, analysis, input, errors}``;
``batch -> {submit, input}``; ``submit -> input``; ``analysis`` and ``input`` import no other wing; every wing may
import ``errors``; nothing in ``producer/`` sends a Redis command of its own (the store has a method for each).

The entry points below are what a script, a test or a benchmark calls to do what a command does.
"""

from producer.analysis.compare import CompareOptions, Comparison, compare_chunks, compare_runs
from producer.analysis.report import ReportSummary, batch_report_html, summarise_chunks, summary_report_html
from producer.batch.collect import collect, final_result_chunks, follow
from producer.batch.control import cancel, delete, resume, retry_failed, set_budget
from producer.batch.progress import wait_for_batch
from producer.batch.retry import retry_batch
from producer.batch.status import list_batches, read_snapshot, read_status
from producer.errors import ProducerError
from producer.input.readers import FileSource, FolderSource, InputLine, LineSource, MemorySource
from producer.input.tables import TableSource
from producer.submit.estimate import Estimate, estimate
from producer.submit.plan import SubmitPlan, estimate_plan, plan_submit
from producer.submit.run import SubmitEvents, SubmitReport, submit_plan
from producer.submit.shadow import submit_shadow
from producer.submit.submit import SubmitOptions, build_spec, submit

__all__ = [
    "CompareOptions",
    "Comparison",
    "Estimate",
    "FileSource",
    "FolderSource",
    "InputLine",
    "LineSource",
    "MemorySource",
    "ProducerError",
    "ReportSummary",
    "SubmitEvents",
    "SubmitOptions",
    "SubmitPlan",
    "SubmitReport",
    "TableSource",
    "batch_report_html",
    "build_spec",
    "cancel",
    "collect",
    "compare_chunks",
    "compare_runs",
    "delete",
    "estimate",
    "estimate_plan",
    "final_result_chunks",
    "follow",
    "list_batches",
    "plan_submit",
    "read_snapshot",
    "read_status",
    "resume",
    "retry_batch",
    "retry_failed",
    "set_budget",
    "submit",
    "submit_plan",
    "submit_shadow",
    "summarise_chunks",
    "summary_report_html",
    "wait_for_batch",
]
