"""The contract between producer and worker: records, settings and extraction schemas.

Pure data and pure functions: nothing here opens a connection.
"""

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
