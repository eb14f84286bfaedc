"""The worker's logging: one root handler at the configured level, the SDK's own switch respected, no document text.

- arq logs every job start as ``→ job_id:function(arguments)`` with the first 80 characters of the arguments, and
  a job's one argument is its line, document included. :class:`HideJobArguments` keeps the job id (prefix, batch id
  and line ordinal) and replaces the arguments with ``…``, so no document text reaches the log at INFO.
- ``OPENAI_LOG`` makes the openai SDK call ``logging.basicConfig`` when it is imported; a later plain
  ``basicConfig`` is then a no-op and the root logger stays at WARNING, so the worker logged nothing of its own.
  Ours replaces the SDK's handler (``force``), and the SDK's logger keeps the level ``OPENAI_LOG`` gave it.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ARQ_JOB_START = "%6.2fs → %s(%s)%s"
"""arq 0.28's job-start message (``arq/worker.py``, ``run_job``): delay, job ref, arguments, try/delay note."""
QUIET_LOGGERS = ("httpx2", "openai")
"""Client libraries that log a line per request at INFO: WARNING unless something (``OPENAI_LOG``) set their level."""


class HideJobArguments(logging.Filter):
    """Drops the arguments (the document) from arq's job-start line; every other record passes unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == ARQ_JOB_START and isinstance(record.args, tuple) and len(record.args) == 4:
            delay, ref, _arguments, extra = record.args
            record.args = (delay, ref, "…", extra)
        return True


HIDE_JOB_ARGUMENTS = HideJobArguments()


def hide_job_arguments() -> None:
    """Install :class:`HideJobArguments` on arq's worker logger (once, however often this is called)."""
    logging.getLogger("arq.worker").addFilter(HIDE_JOB_ARGUMENTS)


def configure_logging(level: str) -> None:
    """The process's logging, for ``worker run``: ``level`` is a checked name (``WorkerSettings.log_level``)."""
    logging.basicConfig(level=level, format=FORMAT, force=True)
    hide_job_arguments()
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


class RepeatSummary:
    """Logs the first of a run of like warnings at once, then at most one line per ``interval_s`` per kind saying how
    many more there were, so an outage of the provider is a few lines a minute, not one line per retried call.

    A *kind* is whatever the caller says makes two warnings alike (say: batch, ending, HTTP status). Pure apart from
    the clock it is given, so it is tested without sleeping.
    """

    def __init__(self, logger: logging.Logger, *, interval_s: float = 10.0) -> None:
        self._log = logger
        self._interval_s = interval_s
        self._open: dict[object, tuple[float, int]] = {}
        """kind -> (when its interval started, warnings held back since)."""

    def warning(self, kind: object, now: float, message: str, *args: object) -> bool:
        """Log ``message % args`` unless one like it was logged less than ``interval_s`` ago. True if logged."""
        started, held = self._open.get(kind, (None, 0))
        if started is not None and now - started < self._interval_s:
            self._open[kind] = (started, held + 1)
            return False
        if held:
            message += " (and %d more like it in the last %.0fs)"
            args = (*args, held, now - started if started is not None else 0.0)
        self._open[kind] = (now, 0)
        self._log.warning(message, *args)
        return True
