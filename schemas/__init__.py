"""The contract between producer and worker: records, settings and extraction schemas.

Pure data and pure functions: nothing here opens a connection.
"""

import sys

# jsonschema imports rfc3987-syntax (its checker of the ``iri`` formats) whenever it is installed, and that module
# compiles a grammar when imported: seconds at every process start (each ``producer`` command, each worker), for a
# format few schemas use. It is kept out of jsonschema's own import here; ``schemas.codec.validation`` checks the
# ``iri`` formats with it lazily, on the first such value.
if "jsonschema" not in sys.modules and "rfc3987_syntax" not in sys.modules:
    sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # an import of it now fails, as if absent
    import jsonschema  # noqa: F401

    del sys.modules["rfc3987_syntax"]

from schemas.jobs import DEFAULT_INSTRUCTIONS, ApiKind, BatchSpec, ExtractionJob, Fingerprinter, GenerationParams
from schemas.pricing import DEFAULT_PRICES, ModelPrice
from schemas.results import ErrorInfo, ErrorType, ResultRecord, Status, Usage
from schemas.settings import Settings

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "DEFAULT_PRICES",
    "ApiKind",
    "BatchSpec",
    "ErrorInfo",
    "ErrorType",
    "ExtractionJob",
    "Fingerprinter",
    "GenerationParams",
    "ModelPrice",
    "ResultRecord",
    "Settings",
    "Status",
    "Usage",
]
