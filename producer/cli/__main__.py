"""``python -m producer.cli``: the same command line as ``producer``."""

from producer.cli import main

main(prog_name="producer")
