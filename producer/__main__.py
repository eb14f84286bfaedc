"""``python -m producer``: the same command line as ``producer`` (``producer.cli``)."""

from producer.cli import main

main(prog_name="producer")
