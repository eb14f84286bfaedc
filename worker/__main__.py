"""``python -m worker``: the same command line as ``worker`` (``worker.cli``)."""

from worker.cli import main

main(prog_name="worker")
