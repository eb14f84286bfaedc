"""Built-in extraction schemas, selectable by name (``--schema invoice``).

The attribute docstrings are not only for readers: with ``use_attribute_docstrings=True`` they become the
``description`` of each property in the JSON Schema, which is the model's only guidance beyond the field name. They
are written for the model: what to put there, in which format, and when to use ``null``.

Optional fields come in two kinds, and the difference matters after the strict conversion (see
:mod:`schemas.strict`): ``X | None = None`` means "may be unknown" and keeps a ``null`` the model sends, while a
non-nullable field with a default (``priority``, ``social_profiles``) gets its default when the model sends ``null``.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BUILTIN_SCHEMAS",
    "Address",
    "Contact",
    "Invoice",
    "LineItem",
    "Sentiment",
    "SocialProfile",
    "SupportTicket",
    "TicketCategory",
    "TicketPriority",
]


class Address(BaseModel):
    """A postal address, as written in the document."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    street: str | None = None
    """Street address: number, street name, building, suite; several lines joined with ", "."""
    city: str | None = None
    """City, town or locality."""
    region: str | None = None
    """State, province, county or region, as written."""
    postal_code: str | None = None
    """Postal or ZIP code, exactly as written."""
    country: str | None = None
    """Country as an ISO 3166-1 alpha-2 code (e.g. "US", "DE") if it is stated or unambiguous, else null."""


class LineItem(BaseModel):
    """One billed line of an invoice."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    description: str
    """What was billed, as written on the line."""
    quantity: float | None = Field(default=None, ge=0)
    """Number of units billed; null if the line states no quantity (e.g. a flat fee)."""
    unit_price: float | None = None
    """Price of one unit, in the invoice currency; null if not stated."""
    amount: float
    """Line total in the invoice currency, as printed (normally quantity × unit price)."""


class Invoice(BaseModel):
    """An invoice or bill issued by a vendor. Amounts are plain numbers without currency symbols."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    vendor: str
    """Name of the company or person that issued the invoice."""
    vendor_address: Address | None = None
    """The vendor's address; null if the invoice does not show it."""
    invoice_number: str
    """The invoice number or identifier, exactly as printed."""
    invoice_date: date
    """Date the invoice was issued (YYYY-MM-DD)."""
    due_date: date | None = None
    """Payment due date (YYYY-MM-DD); null if none is stated."""
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    """ISO 4217 code of the currency of all amounts, e.g. "USD", "EUR", "GBP"."""
    line_items: list[LineItem]
    """Every billed line, in document order; empty if the invoice itemizes nothing."""
    subtotal: float
    """Total before tax."""
    tax: float | None = None
    """Total tax (VAT, sales tax); null if no tax is shown."""
    total: float
    """Amount due, including tax."""


class TicketCategory(StrEnum):
    """What a support request is about."""

    BILLING = "billing"
    TECHNICAL = "technical"
    ACCOUNT = "account"
    FEATURE_REQUEST = "feature_request"
    OTHER = "other"


class TicketPriority(StrEnum):
    """How soon a support request needs an answer."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Sentiment(StrEnum):
    """The customer's overall tone."""

    POSITIVE = "positive"
    NEUTRAL = "neutral"
    NEGATIVE = "negative"


class SupportTicket(BaseModel):
    """A customer support message, triaged for routing."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    summary: str
    """One or two sentences in English: what the customer wants or reports."""
    category: TicketCategory
    """The area the request belongs to; "other" if none fits."""
    priority: TicketPriority = TicketPriority.NORMAL
    """"urgent" for outages, security issues or money lost now; "high" when the customer is blocked; "low" for
    questions and suggestions; otherwise "normal"."""
    sentiment: Sentiment
    """The customer's overall tone."""
    order_id: str | None
    """Order, invoice or subscription number the message refers to, exactly as written; null if none."""
    product: str | None
    """Product or plan the message is about, as named by the customer; null if none is named."""
    requires_human: bool
    """True if an agent must act (refund, account change, legal or safety issue, angry customer); false if a
    documented answer suffices."""


class SocialProfile(BaseModel):
    """A profile of the person on a social or professional network."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    platform: str
    """Network name in lower case, e.g. "linkedin", "github", "x", "mastodon"."""
    url: str | None = None
    """Full profile URL if given."""
    handle: str | None = None
    """User name or handle if given, without a leading "@"."""


class Contact(BaseModel):
    """Contact details of one person (e.g. from an email signature, business card or CV)."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    full_name: str
    """The person's full name as written, e.g. "Dr. Jane Q. Smith"."""
    email: str | None = None
    """Email address; null if none is given."""
    phone: str | None = None
    """Main phone number as written, including the country code if present."""
    company: str | None = None
    """Organization the person works for."""
    job_title: str | None = None
    """Job title or role at that organization."""
    address: Address | None = None
    """Postal address of the person or their office."""
    social_profiles: list[SocialProfile] = Field(default_factory=list)
    """Social and professional network profiles mentioned; empty if none."""


BUILTIN_SCHEMAS: dict[str, type[BaseModel]] = {
    "invoice": Invoice,
    "support_ticket": SupportTicket,
    "contact": Contact,
}
"""Built-in schemas by the name users pass as ``--schema`` (the registry also accepts a few aliases)."""
