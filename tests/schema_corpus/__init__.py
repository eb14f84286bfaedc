"""A corpus of realistic JSON Schemas, each with valid and invalid instances (issue 22, item 6).

Layout: ``<kind>/<name>.json``, one schema per file, each ``{"schema", "valid", "invalid", "source"}``. Files named
``gen-*`` are written once by :mod:`tests.schema_corpus.generate` (hypothesis, fixed seeds) and checked in; the rest
are hand-written, ``issue22-*`` being the defects the issue names. :mod:`tests.schema_corpus.loader` reads it, or any
folder of plain ``*.json`` schema files.
"""
