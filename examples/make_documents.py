"""Write the sample invoices and receipts in ``examples/documents/``: PDFs, PNG and JPEG images, text and Markdown.

Regenerate them with::

    .venv/bin/python -m examples.make_documents            # into examples/documents
    .venv/bin/python -m examples.make_documents --out DIR  # anywhere else

The output is deterministic: every date is fixed, the only randomness (the specks of the "scanned" JPEG) comes from
a seeded generator, PDFs are written with reportlab's ``invariant=1`` (no creation time, a fixed document id) and
images carry no metadata, so a re-run with the same reportlab and Pillow writes byte-identical files. The images
use Pillow's bundled font (Aileron), not a system font, so they look the same on every machine.

Every document fits the built-in ``invoice`` schema (:class:`schemas.builtin.Invoice`): a vendor with an address, a
number, an issue date (written as a reader of that country would write it), line items with quantities and unit
prices, a subtotal, tax and a total in one currency. The figures add up: amounts are computed here with
:class:`~decimal.Decimal`, never typed in. One PDF runs to two pages, and ``2026-11/`` holds two of the documents so
a folder walk has something to recurse into.

A development script: it needs reportlab (a ``dev`` dependency) and Pillow, and nothing imports it.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from reportlab.lib.pagesizes import A4, LETTER
from reportlab.pdfgen.canvas import Canvas

DEFAULT_OUT = Path(__file__).resolve().parent / "documents"
SEED = 20261101
CENT = Decimal("0.01")
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


# ---- The documents, as data.


@dataclass(frozen=True)
class Item:
    description: str
    quantity: Decimal | None
    """None for a flat fee: the line shows only its amount."""
    unit_price: Decimal

    @property
    def amount(self) -> Decimal:
        return (self.unit_price * (self.quantity if self.quantity is not None else 1)).quantize(CENT, ROUND_HALF_UP)


@dataclass(frozen=True)
class Money:
    """How a country writes an amount: ``1,234.56`` or ``1.234,56`` or ``1'234.56``, with the currency around it."""

    code: str
    prefix: str = ""
    suffix: str = ""
    thousands: str = ","
    decimal: str = "."

    def number(self, value: Decimal) -> str:
        whole, cents = f"{value:,.2f}".split(".")
        return whole.replace(",", self.thousands) + self.decimal + cents

    def __call__(self, value: Decimal) -> str:
        return f"{self.prefix}{self.number(value)}{self.suffix}"


USD = Money("USD", prefix="$")
EUR = Money("EUR", suffix=" €", thousands=".", decimal=",")
EUR_TILL = Money("EUR", suffix=" EUR", thousands=".", decimal=",")
"""Euros as a till prints them (and the images' font has no € sign)."""
GBP = Money("GBP", prefix="£")
CAD = Money("CAD", prefix="$")
CHF = Money("CHF", prefix="CHF ", thousands="'")


@dataclass(frozen=True)
class Document:
    stem: str
    """File name without the extension, relative to the output folder (may include a subfolder)."""
    title: str
    vendor: str
    vendor_lines: tuple[str, ...]
    number_label: str
    number: str
    date: str
    """As printed (the model has to turn it into YYYY-MM-DD)."""
    money: Money
    items: tuple[Item, ...]
    tax_label: str | None
    tax_rate: Decimal | None
    due: str | None = None
    bill_to: tuple[str, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()
    """More header fields (label, value): a customer number, an order reference, a time."""
    notes: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def subtotal(self) -> Decimal:
        return sum((item.amount for item in self.items), Decimal(0))

    @property
    def tax(self) -> Decimal | None:
        return None if self.tax_rate is None else (self.subtotal * self.tax_rate).quantize(CENT, ROUND_HALF_UP)

    @property
    def total(self) -> Decimal:
        return self.subtotal + (self.tax or Decimal(0))

    def label(self, key: str) -> str:
        return self.labels.get(key, key)


def _items(*rows: tuple[str, str | None, str]) -> tuple[Item, ...]:
    return tuple(Item(d, Decimal(q) if q is not None else None, Decimal(p)) for d, q, p in rows)


NORTHWIND = Document(
    stem="invoice-northwind-NW-2026-0917",
    title="INVOICE",
    vendor="Northwind Office Supply Co.",
    vendor_lines=("1420 Commerce Blvd, Suite 300", "Columbus, OH 43215", "United States", "billing@northwind.example"),
    number_label="Invoice No.",
    number="NW-2026-0917",
    date="September 17, 2026",
    due="October 17, 2026",
    bill_to=("Lakeside Dental Group", "Attn: Accounts Payable", "77 Shoreline Drive", "Sandusky, OH 44870"),
    extra=(("Customer ID", "C-10482"), ("PO Number", "LDG-5531"), ("Terms", "Net 30")),
    money=USD,
    items=_items(
        ("Copy paper, letter, 20 lb, case of 10 reams", "4", "54.99"),
        ("Black toner cartridge, HP 58A compatible", "3", "89.50"),
        ("Ergonomic mesh office chair", "2", "249.00"),
        ("Sticky notes 3x3 in, 24-pack", "5", "18.75"),
        ("Gel pens, blue, box of 12", "6", "11.20"),
        ("Desk delivery and assembly", None, "75.00"),
    ),
    tax_label="Sales tax (7.5%)",
    tax_rate=Decimal("0.075"),
    notes=("Please make checks payable to Northwind Office Supply Co.", "ACH: routing 044000024, account 7712-0093"),
)

_BERGMANN_PARTS = [
    ("Hydraulic hose DN10, 1 m", "28.40"),
    ("O-ring set NBR 70, 225 pcs", "36.90"),
    ("Ball bearing 6204-2RS", "7.85"),
    ("Ball bearing 6305-2Z", "11.60"),
    ("Hex bolt M10x40, 8.8, zinc (100)", "19.20"),
    ("Hex nut M10, 8, zinc (100)", "6.75"),
    ("Proximity sensor M18, PNP", "42.30"),
    ("Pneumatic cylinder 32x100", "88.00"),
    ("Solenoid valve 5/2, 24 V DC", "64.50"),
    ("Push-in fitting 8 mm (10)", "14.90"),
    ("PU tubing 8x6 mm, 25 m", "31.40"),
    ("Limit switch, roller lever", "23.15"),
    ("Timing belt HTD 5M, 15 mm, 1 m", "17.80"),
    ("Coupling, jaw type, 19/24", "26.40"),
    ("Linear guide rail 15 mm, 500 mm", "72.00"),
    ("Cable gland M20, IP68 (10)", "9.60"),
    ("Control cable 7G1.5, 10 m", "38.70"),
    ("Terminal block 4 mm², grey (50)", "22.50"),
    ("Circuit breaker C16, 1-pole", "12.95"),
    ("Contactor 9 A, 24 V coil", "34.80"),
    ("Gear oil ISO VG 220, 5 l", "45.60"),
    ("Grease cartridge EP2, 400 g", "8.90"),
    ("V-belt SPZ 1250", "13.70"),
    ("Shaft seal 30x47x7", "4.25"),
    ("Spring washer M10 (100)", "5.40"),
    ("Roller chain 08B-1, 5 m", "41.20"),
    ("Sprocket 08B-1, 19 teeth", "18.35"),
    ("Flange bearing UCF 205", "24.90"),
    ("Pressure gauge 0-16 bar, G1/4", "15.80"),
    ("Ball valve G1/2, brass", "12.40"),
    ("Inductive sensor cable M12, 5 m", "9.95"),
    ("Motor protection switch 4-6.3 A", "48.70"),
    ("Signal lamp LED 24 V, green", "7.60"),
    ("Emergency stop button, 40 mm", "19.90"),
    ("Cable ties 4.8x200, black (100)", "4.80"),
    ("Thread locker, medium, 50 ml", "16.50"),
]
BERGMANN = Document(
    stem="invoice-bergmann-RE-2026-1184",
    title="RECHNUNG / INVOICE",
    vendor="Bergmann Industrietechnik GmbH",
    vendor_lines=("Hafenstraße 42", "20457 Hamburg", "Deutschland", "USt-IdNr. DE 298 114 561"),
    number_label="Rechnungsnr. / Invoice no.",
    number="RE-2026-1184",
    date="14.10.2026",
    due="28.10.2026",
    bill_to=("Köhler Verpackungen AG", "Werk 2, Instandhaltung", "Industriestraße 9", "31135 Hildesheim"),
    extra=(("Kundennr. / Customer no.", "K-20931"), ("Auftrag / Order", "AB-2026-3307")),
    money=EUR,
    items=tuple(
        Item(description, Decimal((n * 7) % 11 + 1), Decimal(price))
        for n, (description, price) in enumerate(_BERGMANN_PARTS, start=1)
    ),
    tax_label="MwSt. / VAT 19 %",
    tax_rate=Decimal("0.19"),
    notes=(
        "Zahlbar innerhalb von 14 Tagen ohne Abzug. / Payable within 14 days, net.",
        "IBAN DE89 3704 0044 0532 0130 00 · BIC COBADEFFXXX · Commerzbank Hamburg",
    ),
    labels={
        "Bill to": "Rechnungsempfänger / Bill to",
        "Date": "Datum / Date",
        "Due date": "Fällig am / Due date",
        "Description": "Bezeichnung / Description",
        "Qty": "Menge",
        "Unit price": "Einzelpreis",
        "Amount": "Betrag",
        "Subtotal": "Zwischensumme / Subtotal",
        "Total": "Gesamtbetrag / Total",
    },
)

HARBOUR = Document(
    stem="2026-11/invoice-harbour-HL-55012",
    title="INVOICE",
    vendor="Harbour Light Studios Ltd",
    vendor_lines=("12 Quayside Row", "Bristol BS1 4RN", "United Kingdom", "VAT Reg. No. GB 318 4471 62"),
    number_label="Invoice number",
    number="HL-55012",
    date="3 November 2026",
    due="3 December 2026",
    bill_to=("Fernleigh Garden Centre", "Fernleigh Lane", "Bath BA2 7QT"),
    extra=(("Project", "Autumn catalogue 2026"),),
    money=GBP,
    items=_items(
        ("Art direction, catalogue shoot (day rate)", "2", "680.00"),
        ("Product photography, per finished image", "48", "35.00"),
        ("Retouching, per hour", "6.5", "55.00"),
        ("Studio hire and lighting", None, "420.00"),
        ("Travel, Bristol to Bath, return", None, "38.40"),
    ),
    tax_label="VAT at 20%",
    tax_rate=Decimal("0.20"),
    notes=("Bank transfer to Harbour Light Studios Ltd, sort code 30-94-57, account 22871943.",),
)

BLUEBIRD = Document(
    stem="receipt-bluebird-cafe",
    title="RECEIPT",
    vendor="Bluebird Cafe",
    vendor_lines=("88 Valencia St", "San Francisco, CA 94103", "(415) 555-0142"),
    number_label="Receipt #",
    number="004217",
    date="10/02/2026",
    extra=(("Time", "08:41"), ("Server", "Maya")),
    money=USD,
    items=_items(
        ("Oat milk latte", "2", "5.25"),
        ("Almond croissant", "1", "4.50"),
        ("Breakfast burrito", "1", "11.75"),
        ("Fresh orange juice", "1", "4.95"),
    ),
    tax_label="Sales tax 8.625%",
    tax_rate=Decimal("0.08625"),
    notes=("VISA **** 4417  APPROVED", "Thank you - see you soon!"),
)

CORNER_HARDWARE = Document(
    stem="receipt-corner-hardware",
    title="SALES RECEIPT",
    vendor="Corner Hardware & Paint",
    vendor_lines=("2150 W Main St", "Boise, ID 83702", "Store 014  (208) 555-0187"),
    number_label="Trans #",
    number="014-88213",
    date="Oct 24, 2026",
    extra=(("Time", "4:12 PM"), ("Register", "3"), ("Cashier", "DALE")),
    money=USD,
    items=_items(
        ("Interior paint, eggshell, 1 gal", "2", "38.99"),
        ("Paint roller kit 9 in", "1", "14.49"),
        ("Painter's tape 1.88 in x 60 yd", "3", "7.29"),
        ("Drop cloth 9 x 12 ft", "2", "9.98"),
        ("Wood screws #8 x 1-1/4 in, 100 ct", "1", "8.79"),
        ("Cordless drill battery 20V", "1", "59.00"),
        ("Sandpaper assortment, 12 sheets", "1", "6.49"),
        ("Caulk, white, 10.1 oz", "4", "4.98"),
    ),
    tax_label="ID sales tax 6%",
    tax_rate=Decimal("0.06"),
    notes=("MASTERCARD **** 0932", "Returns within 30 days with receipt"),
)

BIOMARKT = Document(
    stem="2026-11/receipt-biomarkt-am-kanal",
    title="KASSENBON",
    vendor="Biomarkt am Kanal",
    vendor_lines=("Maybachufer 17", "12047 Berlin", "Deutschland", "USt-IdNr. DE 311 502 894"),
    number_label="Bon-Nr.",
    number="7731-0492",
    date="08.11.2026",
    extra=(("Uhrzeit", "17:56"), ("Kasse", "2")),
    money=EUR_TILL,
    items=_items(
        ("Vollkornbrot 750 g", "1", "3.69"),
        ("Hafermilch 1 l", "3", "1.49"),
        ("Apfel Elstar, kg", "1.25", "3.20"),
        ("Gouda jung, 200 g", "1", "4.79"),
        ("Eier Freiland, 10 Stk.", "1", "4.29"),
        ("Tomaten, kg", "0.8", "4.50"),
        ("Kaffee, ganze Bohne, 500 g", "1", "9.99"),
    ),
    tax_label="MwSt 7 %",
    tax_rate=Decimal("0.07"),
    notes=("Netto-Preise, MwSt. separat ausgewiesen", "girocard  ****  6120", "Vielen Dank und bis bald!"),
    labels={"Date": "Datum", "Subtotal": "Netto", "Total": "SUMME"},
)

MAPLE_LEAF = Document(
    stem="receipt-maple-leaf-books",
    title="RECEIPT",
    vendor="Maple Leaf Books",
    vendor_lines=("410 Queen St W", "Toronto, ON M5V 2A5", "Canada", "HST # 81447 2291 RT0001"),
    number_label="Invoice",
    number="MLB-260915",
    date="2026-10-19",
    extra=(("Time", "13:27"), ("Clerk", "Priya")),
    money=CAD,
    items=_items(
        ("The Map of Salt and Stars (pb)", "1", "22.99"),
        ("Field Guide to Ontario Birds", "1", "34.95"),
        ("Notebook, dot grid, A5", "2", "14.50"),
        ("Bookmark, leather", "3", "6.00"),
    ),
    tax_label="HST 13%",
    tax_rate=Decimal("0.13"),
    notes=("DEBIT **** 2287", "Exchanges within 14 days"),
)

KELLER = Document(
    stem="invoice-keller-translations-2026-041",
    title="INVOICE",
    vendor="Anna Keller Translations",
    vendor_lines=("Seefeldstrasse 118", "8008 Zürich", "Switzerland", "VAT CHE-412.887.305 MWST"),
    number_label="Invoice no.",
    number="2026-041",
    date="30 September 2026",
    due="30 October 2026",
    bill_to=("Alpenrose Tourism AG", "Marketing", "Bahnhofplatz 3", "3800 Interlaken"),
    money=CHF,
    items=_items(
        ("Translation DE>EN, brochure 'Winter 2026/27', per 100 words", "38", "28.00"),
        ("Translation DE>FR, website update, per 100 words", "12.5", "30.00"),
        ("Proofreading, per hour", "3", "95.00"),
        ("Rush surcharge (48 h)", None, "150.00"),
    ),
    tax_label="VAT 8.1%",
    tax_rate=Decimal("0.081"),
    notes=("Payment within 30 days to IBAN CH93 0076 2011 6238 5295 7.", "Thank you for your business."),
)

PINECREST = Document(
    stem="invoice-pinecrest-hosting-PH-88213",
    title="Invoice",
    vendor="Pinecrest Hosting LLC",
    vendor_lines=("500 Pine Ridge Road", "Asheville, NC 28801", "United States"),
    number_label="Invoice",
    number="PH-88213",
    date="November 1, 2026",
    due="November 15, 2026",
    bill_to=("Tidewater Kayak Rentals", "19 Harbor Street", "Beaufort, NC 28516"),
    extra=(("Account", "TKR-0042"), ("Billing period", "Nov 1 - Nov 30, 2026")),
    money=USD,
    items=_items(
        ("Managed VPS, 4 vCPU / 8 GB", "1", "64.00"),
        ("Block storage, per 100 GB", "3", "10.00"),
        ("Daily backups", "1", "12.00"),
        ("Domain renewal tidewaterkayak.example (1 year)", "1", "18.50"),
        ("SSL certificate, wildcard", "1", "79.00"),
    ),
    tax_label=None,
    tax_rate=None,
    notes=("Hosting services are not subject to sales tax in NC.", "Pay online at pay.pinecrest.example/PH-88213"),
)


# ---- PDF invoices (reportlab).


def write_pdf(doc: Document, path: Path, pagesize: tuple[float, float], rows_first: int, rows_next: int) -> None:
    """An invoice on as many pages as its items need: header and parties on page 1, totals after the last item."""
    width, height = pagesize
    margin = 50.0
    pages: list[Sequence[Item]] = [doc.items[:rows_first]]
    rest = doc.items[rows_first:]
    while rest:
        pages.append(rest[:rows_next])
        rest = rest[rows_next:]
    canvas = Canvas(str(path), pagesize=pagesize, invariant=1, pageCompression=1)
    canvas.setTitle(f"{doc.vendor} {doc.number}")
    canvas.setAuthor(doc.vendor)
    canvas.setSubject(f"{doc.title} {doc.number}")
    canvas.setCreator("structured-extract examples/make_documents.py")
    for number, items in enumerate(pages, start=1):
        y = _pdf_header(canvas, doc, width, height, margin) if number == 1 else _pdf_continued(canvas, doc, height)
        y = _pdf_items(canvas, doc, items, width, margin, y)
        if number == len(pages):
            _pdf_totals(canvas, doc, width, margin, y)
        canvas.setFont("Helvetica", 8)
        canvas.drawCentredString(width / 2, 30, f"{doc.vendor} · {doc.number} · Page {number} of {len(pages)}")
        canvas.showPage()
    canvas.save()


def _pdf_header(canvas: Canvas, doc: Document, width: float, height: float, margin: float) -> float:
    y = height - margin - 10
    canvas.setFont("Helvetica-Bold", 18)
    canvas.drawString(margin, y, doc.vendor)
    canvas.setFont("Helvetica", 9.5)
    for line in doc.vendor_lines:
        y -= 13
        canvas.drawString(margin, y, line)
    canvas.setFont("Helvetica-Bold", 16)
    canvas.drawRightString(width - margin, height - margin - 10, doc.title)
    fields = [(doc.number_label, doc.number), (doc.label("Date"), doc.date)]
    if doc.due:
        fields.append((doc.label("Due date"), doc.due))
    fields += list(doc.extra)
    fy = height - margin - 32
    for label, value in fields:
        canvas.setFont("Helvetica", 9)
        canvas.drawRightString(width - margin - 110, fy, label + ":")
        canvas.setFont("Helvetica-Bold", 9)
        canvas.drawString(width - margin - 104, fy, value)
        fy -= 13
    y = min(y, fy) - 28
    canvas.setFont("Helvetica-Bold", 10)
    canvas.drawString(margin, y, doc.label("Bill to"))
    canvas.setFont("Helvetica", 9.5)
    for line in doc.bill_to:
        y -= 13
        canvas.drawString(margin, y, line)
    return y - 28


def _pdf_continued(canvas: Canvas, doc: Document, height: float) -> float:
    canvas.setFont("Helvetica-Bold", 11)
    canvas.drawString(50, height - 60, f"{doc.vendor} · {doc.title} {doc.number} ({doc.date}), continued")
    return height - 95


def _pdf_items(canvas: Canvas, doc: Document, items: Sequence[Item], width: float, margin: float, y: float) -> float:
    qty_x, unit_x, amount_x = width - margin - 200, width - margin - 90, width - margin
    canvas.setFillGray(0.9)
    canvas.rect(margin, y - 5, width - 2 * margin, 17, stroke=0, fill=1)
    canvas.setFillGray(0)
    canvas.setFont("Helvetica-Bold", 9)
    canvas.drawString(margin + 4, y, doc.label("Description"))
    canvas.drawRightString(qty_x, y, doc.label("Qty"))
    canvas.drawRightString(unit_x, y, f"{doc.label('Unit price')} ({doc.money.code})")
    canvas.drawRightString(amount_x - 4, y, f"{doc.label('Amount')} ({doc.money.code})")
    canvas.setFont("Helvetica", 9)
    for item in items:
        y -= 15
        canvas.drawString(margin + 4, y, item.description)
        if item.quantity is not None:
            canvas.drawRightString(qty_x, y, _quantity(item.quantity, doc.money))
            canvas.drawRightString(unit_x, y, doc.money.number(item.unit_price))
        canvas.drawRightString(amount_x - 4, y, doc.money.number(item.amount))
    canvas.setLineWidth(0.5)
    canvas.line(margin, y - 7, width - margin, y - 7)
    return y - 7


def _pdf_totals(canvas: Canvas, doc: Document, width: float, margin: float, y: float) -> None:
    rows = [(doc.label("Subtotal"), doc.money(doc.subtotal))]
    if doc.tax is not None and doc.tax_label:
        rows.append((doc.tax_label, doc.money(doc.tax)))
    rows.append((f"{doc.label('Total')} ({doc.money.code})", doc.money(doc.total)))
    for n, (label, value) in enumerate(rows):
        y -= 16
        canvas.setFont("Helvetica-Bold" if n == len(rows) - 1 else "Helvetica", 10)
        canvas.drawRightString(width - margin - 110, y, label)
        canvas.drawRightString(width - margin - 4, y, value)
    y -= 36
    canvas.setFont("Helvetica", 8.5)
    for line in doc.notes:
        canvas.drawString(margin, y, line)
        y -= 12


def _quantity(quantity: Decimal, money: Money) -> str:
    text = f"{quantity.normalize():f}"
    return text.replace(".", money.decimal)


# ---- Receipts as images (Pillow).


def receipt_image(doc: Document, width: int, height: int, *, paper: int = 255, ink: int = 20) -> Image.Image:
    """A till receipt drawn to fill ``width`` px, on a ``width`` x ``height`` grayscale canvas.

    ASCII only: Pillow's bundled font, used so every machine draws the same pixels, has no accented letters.
    """
    texts = [doc.vendor, *doc.vendor_lines, doc.title, doc.number, doc.date, *(i.description for i in doc.items)]
    texts += [*doc.notes, *(f"{k} {v}" for k, v in doc.extra), *doc.labels.values(), doc.tax_label or ""]
    if not all(text.isascii() for text in texts) or not doc.money(Decimal(1)).isascii():
        raise ValueError(f"{doc.stem}: a receipt image can only show ASCII text")
    size = round(width / 30)
    regular = ImageFont.load_default(size=size)
    bold = ImageFont.load_default(size=round(size * 1.35))
    small = ImageFont.load_default(size=round(size * 0.8))
    image = Image.new("L", (width, height), paper)
    draw = ImageDraw.Draw(image)
    margin, line = round(width * 0.07), round(size * 1.45)
    right = width - margin
    y = round(size * 1.5)

    def centred(text: str, font: Font, step: int) -> None:
        nonlocal y
        draw.text(((width - draw.textlength(text, font=font)) / 2, y), text, font=font, fill=ink)
        y += step

    def pair(left: str, value: str, font: Font = regular) -> None:
        nonlocal y
        draw.text((margin, y), left, font=font, fill=ink)
        draw.text((right - draw.textlength(value, font=font), y), value, font=font, fill=ink)
        y += line

    def rule() -> None:
        nonlocal y
        draw.line((margin, y + line // 3, right, y + line // 3), fill=ink, width=max(1, size // 12))
        y += line

    centred(doc.vendor, bold, round(line * 1.3))
    for text in doc.vendor_lines:
        centred(text, small, round(line * 0.85))
    y += line // 2
    centred(doc.title, regular, line)
    pair(doc.number_label, doc.number)
    pair(doc.label("Date"), doc.date)
    for label, value in doc.extra:
        pair(label, value)
    rule()
    for item in doc.items:
        pair(item.description, doc.money.number(item.amount))
        if item.quantity is not None and item.quantity != 1:
            unit = f"  {_quantity(item.quantity, doc.money)} x {doc.money.number(item.unit_price)}"
            draw.text((margin, y - round(line * 0.2)), unit, font=small, fill=ink)
            y += round(line * 0.8)
    rule()
    pair(doc.label("Subtotal"), doc.money.number(doc.subtotal))
    if doc.tax is not None and doc.tax_label:
        pair(doc.tax_label, doc.money.number(doc.tax))
    pair(doc.label("Total"), doc.money(doc.total), bold)
    y += line // 2
    for text in doc.notes:
        centred(text, small, round(line * 0.9))
    if y > height - size:
        raise ValueError(f"{doc.stem}: the receipt needs {y} px, the image has {height}")
    return image


def scanned(image: Image.Image, rng: random.Random) -> Image.Image:
    """A receipt as a flatbed scan: faint specks of dust on the paper (deterministic for a seeded ``rng``)."""
    draw = ImageDraw.Draw(image)
    width, height = image.size
    for _ in range(220):
        x, y, r = rng.randrange(width), rng.randrange(height), rng.choice((1, 1, 1, 2))
        draw.ellipse((x, y, x + r, y + r), fill=rng.randrange(150, 215))
    return image


def write_png(image: Image.Image, path: Path) -> None:
    """16 gray levels (white stays white) are plenty for black text on paper, and keep the file small."""
    image.point([round(v / 17) * 17 for v in range(256)]).save(path, format="PNG", optimize=True)


def write_jpeg(image: Image.Image, path: Path) -> None:
    image.save(path, format="JPEG", quality=72, optimize=True)


# ---- Text and Markdown invoices.


def invoice_text(doc: Document) -> str:
    """A plain-text invoice, as a freelancer would email it."""
    width = 78
    out = [doc.vendor, *doc.vendor_lines, "", doc.title.center(width).rstrip(), ""]
    fields = [(doc.number_label, doc.number), ("Date", doc.date)]
    if doc.due:
        fields.append(("Due date", doc.due))
    out += [f"{label + ':':<14}{value}" for label, value in fields]
    out += ["", "Bill to:", *(f"  {line}" for line in doc.bill_to), ""]
    out.append(f"{'Description':<48}{'Qty':>6}{'Rate':>11}{'Amount':>13}")
    out.append("-" * width)
    for item in doc.items:
        qty = _quantity(item.quantity, doc.money) if item.quantity is not None else ""
        rate = doc.money.number(item.unit_price) if item.quantity is not None else ""
        first, *more = textwrap.wrap(item.description, 46, subsequent_indent="  ")
        out.append(f"{first:<48}{qty:>6}{rate:>11}{doc.money.number(item.amount):>13}")
        out += more
    out.append("-" * width)
    out.append(f"{'Subtotal':>65}{doc.money.number(doc.subtotal):>13}")
    if doc.tax is not None and doc.tax_label:
        out.append(f"{doc.tax_label:>65}{doc.money.number(doc.tax):>13}")
    out.append(f"{'Total due (' + doc.money.code + ')':>65}{doc.money.number(doc.total):>13}")
    out += ["", *doc.notes]
    return "\n".join(out) + "\n"


def invoice_markdown(doc: Document) -> str:
    """A Markdown invoice, as a billing system's email renders it."""
    out = [f"# {doc.title} {doc.number}", "", f"**{doc.vendor}**  ", *(f"{line}  " for line in doc.vendor_lines)]
    out += ["", "| | |", "|---|---|", f"| {doc.number_label} | {doc.number} |", f"| Invoice date | {doc.date} |"]
    if doc.due:
        out.append(f"| Due date | {doc.due} |")
    out += [f"| {label} | {value} |" for label, value in doc.extra]
    out += ["", "## Bill to", "", *(f"{line}  " for line in doc.bill_to), "", "## Charges", ""]
    out += ["| Description | Qty | Unit price | Amount |", "|---|---:|---:|---:|"]
    for item in doc.items:
        qty = _quantity(item.quantity, doc.money) if item.quantity is not None else ""
        out.append(f"| {item.description} | {qty} | {doc.money(item.unit_price)} | {doc.money(item.amount)} |")
    out += ["", f"**Subtotal:** {doc.money(doc.subtotal)}  "]
    if doc.tax is not None and doc.tax_label:
        out.append(f"**{doc.tax_label}:** {doc.money(doc.tax)}  ")
    else:
        out.append("**Tax:** none  ")
    out += [f"**Total due:** {doc.money(doc.total)} {doc.money.code}", "", *(f"> {line}" for line in doc.notes)]
    return "\n".join(out) + "\n"


def write_text(text: str, path: Path) -> None:
    path.write_text(text, encoding="utf-8", newline="\n")


# ---- All of them.


@dataclass(frozen=True)
class Output:
    path: str
    write: Callable[[Path], None]


def outputs() -> list[Output]:
    rng = random.Random(SEED)  # noqa: S311 - dust on a sample scan, not security
    return [
        Output(f"{NORTHWIND.stem}.pdf", lambda p: write_pdf(NORTHWIND, p, LETTER, 30, 40)),
        Output(f"{BERGMANN.stem}.pdf", lambda p: write_pdf(BERGMANN, p, A4, 30, 40)),
        Output(f"{HARBOUR.stem}.pdf", lambda p: write_pdf(HARBOUR, p, A4, 30, 40)),
        Output(f"{BLUEBIRD.stem}.png", lambda p: write_png(receipt_image(BLUEBIRD, 600, 900), p)),
        Output(f"{CORNER_HARDWARE.stem}.png", lambda p: write_png(receipt_image(CORNER_HARDWARE, 800, 1200), p)),
        Output(f"{BIOMARKT.stem}.png", lambda p: write_png(receipt_image(BIOMARKT, 1200, 1800), p)),
        Output(
            f"{MAPLE_LEAF.stem}.jpg",
            lambda p: write_jpeg(scanned(receipt_image(MAPLE_LEAF, 720, 960, paper=246, ink=35), rng), p),
        ),
        Output(f"{KELLER.stem}.txt", lambda p: write_text(invoice_text(KELLER), p)),
        Output(f"{PINECREST.stem}.md", lambda p: write_text(invoice_markdown(PINECREST), p)),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.make_documents", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    for output in outputs():
        path = args.out / output.path
        path.parent.mkdir(parents=True, exist_ok=True)
        output.write(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        sys.stdout.write(f"{path}  {path.stat().st_size:>7,} bytes  sha256 {digest}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
