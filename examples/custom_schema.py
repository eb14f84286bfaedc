"""An example of a user-defined extraction schema: any pydantic model works.

Use it from the repository root with::

    producer submit --schema examples.custom_schema:JobPosting ...

Write attribute docstrings for the model that will fill the fields (``use_attribute_docstrings=True`` turns them
into JSON Schema descriptions). Fields the document may not contain should be ``X | None = None``; a field with a
non-null default (``remote``, ``skills``) gets that default when the model answers ``null``.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EmploymentType(StrEnum):
    """The kind of contract offered."""

    FULL_TIME = "full_time"
    PART_TIME = "part_time"
    CONTRACT = "contract"
    INTERNSHIP = "internship"
    TEMPORARY = "temporary"


class SalaryRange(BaseModel):
    """Pay offered, as stated in the posting."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    minimum: float | None = Field(default=None, ge=0)
    """Lower bound; null if only a single figure or an upper bound is given."""
    maximum: float | None = Field(default=None, ge=0)
    """Upper bound, or the single figure given."""
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    """ISO 4217 currency code, e.g. "USD"."""
    period: Literal["hour", "day", "month", "year"] = "year"
    """What the amounts are paid per."""


class JobPosting(BaseModel):
    """A job advertisement."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    title: str
    """The job title as advertised."""
    company: str
    """The hiring company (not the recruiting agency, if both are named)."""
    location: str | None = None
    """City and country of the workplace; null if not stated."""
    remote: bool = False
    """True if the job can be done fully remotely."""
    employment_type: EmploymentType | None = None
    """The contract type; null if not stated."""
    salary: SalaryRange | None = None
    """The advertised pay; null if no pay is mentioned."""
    skills: list[str] = Field(default_factory=list)
    """Required or preferred skills and technologies, each as a short noun phrase."""
    posted_on: date | None = None
    """Date the posting was published (YYYY-MM-DD); null if not stated."""
