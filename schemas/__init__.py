"""The contract between producer and worker: records, settings, Redis key names and extraction schemas.

Pure data and pure functions: nothing here opens a connection.
"""

from schemas.jobs import DEFAULT_INSTRUCTIONS, ApiKind, BatchSpec, ExtractionJob, Fingerprinter, GenerationParams
from schemas.keys import Keys
from schemas.results import ErrorInfo, ErrorType, ResultRecord, Status, Usage
from schemas.settings import DEFAULT_PRICES, ModelPrice, Settings

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
    "Keys",
    "ModelPrice",
    "ResultRecord",
    "Settings",
    "Status",
    "Usage",
]
