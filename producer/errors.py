"""The producer's errors: one tree, each class carrying the exit code a command ends with when it is raised.

The library raises them with the facts in their message (and attributes); ``producer.cli`` is the one place that
prints one and exits, with ``exit_code``. Where a class lives is its wing's business; its place in the tree is here::

    ProducerError                      1  an error the user can act on (the message says how)
    |-- InputError                     2  the input or the request cannot be done as asked
    |   |-- OptionError                   here: an option missing, contradictory or malformed (shown with the usage)
    |   |-- RequestRefusedError           producer.submit.plan: what the model or API would refuse for every line
    |   |-- InvalidLinesError             producer.submit.plan: input lines that cannot run (each with its line)
    |   |-- GlobError                     producer.input.documents: a --glob that selects nothing below the folder
    |   |-- TableInputError               producer.input.tables: a table input that cannot be read (missing, corrupt,
    |   |                                 a missing column, S3 failing)
    |   |-- OutputPathError               producer.batch.collect: an output file in a missing folder, or a folder
    |   |-- ShadowBudgetError             producer.batch.control: a shadow's budget is set through its main batch
    |   |-- PendingLimitError             producer.analysis.compare: two runs in orders too different to join in memory
    |   `-- ResubmitRefusedError          producer.submit.resubmit: input lines the batch cannot take (``problems``)
    |-- BatchStateError                1  the batch in Redis is not what the command needs
    |   |-- BatchExistsError              producer.submit.indexer: the id is taken by another batch
    |   |   `-- BatchGoneError            producer.submit.feeder: deleted or expired while it was fed
    |   |-- InputChangedError             producer.submit.indexer: a line differs from the batch's
    |   `-- BatchCancelledError           producer.batch.control: a cancelled batch's lines are not run again
    |-- AttachmentError                1  producer.input.documents: an attachment the API would refuse, or unreadable
    |-- UploadError                    1  producer.submit.attachments: the Files API refused an upload
    |-- IncompleteSubmitError          3  producer.batch.status: not every line enqueued, and nobody feeding the batch
    |-- WaitTimeoutError               3  producer.batch.progress: ``wait --timeout`` passed with lines pending
    `-- BatchPausedError               5  producer.batch.status: paused on an error every line would meet

Exit 4 (every line has a result, some failed or were cancelled) is an outcome, not an error: the CLI reads it off
the batch's record. Errors that are not the producer's own (``store.batches.BatchNotFoundError``,
``store.keys.InvalidIdError``, Redis' own) are mapped by the CLI to 1 as well.
"""

from __future__ import annotations

from typing import ClassVar

EXIT_ERROR = 1
EXIT_INVALID_INPUT = 2
EXIT_INCOMPLETE = 3
"""``wait`` timed out, ``collect`` wrote a file with lines still pending, or a submit was interrupted."""
EXIT_FAILED_LINES = 4
"""``wait``/``run``/``collect``: every line has its final result, and some of them failed or were cancelled."""
EXIT_PAUSED = 5
"""``wait``/``run``: the batch paused on an error every line would meet (a bad key ...): fix it, then ``resume``."""


class ProducerError(Exception):
    exit_code: ClassVar[int] = EXIT_ERROR


class InputError(ProducerError):
    exit_code: ClassVar[int] = EXIT_INVALID_INPUT


class OptionError(InputError):
    """An option missing, contradictory or malformed: the CLI shows it as a usage error, with the command's usage."""


class BatchStateError(ProducerError):
    exit_code: ClassVar[int] = EXIT_ERROR
