"""Invoice documents: PDF (reportlab) and CSV, rendered from the stored lines only."""

from __future__ import annotations

import csv
import io

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

from billing.models import Invoice

_CJK_FONT = "STSong-Light"  # built into reportlab (Adobe CID font): no font file needed
_CJK_FONT_READY = False


def _font_for(text: str) -> str:
    global _CJK_FONT_READY
    try:
        text.encode("latin-1")
        return "Helvetica"
    except UnicodeEncodeError:
        if not _CJK_FONT_READY:
            pdfmetrics.registerFont(UnicodeCIDFont(_CJK_FONT))
            _CJK_FONT_READY = True
        return _CJK_FONT


def _money(amount, currency: str) -> str:
    return f"{amount:,.2f} {currency}"


def _plain(value) -> str:
    """A Decimal as a plain number: 10, 0.5, 2.25 (never 1E+1, as ``normalize()`` alone prints)."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def invoice_render_csv(invoice: Invoice) -> str:
    """One row per line item, then the total, what was paid at purchase and what is due;
    amounts as plain decimals for spreadsheets."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["invoice", "tenant", "period_start", "period_end", "status", "currency"])
    writer.writerow(
        [
            invoice.number,
            invoice.tenant.name,
            invoice.period_start,
            invoice.period_end,
            invoice.status,
            invoice.currency,
        ]
    )
    writer.writerow([])
    writer.writerow(["kind", "description", "quantity", "unit_price", "amount", "paid_at_purchase"])
    for line in invoice.lines.all():
        writer.writerow(
            [
                line.kind,
                line.description,
                _plain(line.quantity),
                _plain(line.unit_price),
                line.amount,
                "yes" if line.prepaid_by_id else "",
            ]
        )
    writer.writerow(["total", "", "", "", invoice.total, ""])
    writer.writerow(["paid_at_purchase", "", "", "", invoice.amount_prepaid, ""])
    writer.writerow(["amount_due", "", "", "", invoice.amount_due, ""])
    return out.getvalue()


def invoice_render_pdf(invoice: Invoice) -> bytes:
    """A one-or-more page A4 invoice: header, tenant, period, line table, total."""
    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pagesize=A4, pageCompression=1)
    pdf.setTitle(f"Invoice {invoice.number}")
    width, height = A4
    left, right = 20 * mm, width - 20 * mm

    def text(x, y, value, size=10, align="left"):
        value = str(value)
        pdf.setFont(_font_for(value), size)
        draw = {"left": pdf.drawString, "right": pdf.drawRightString}[align]
        draw(x, y, value)

    y = height - 25 * mm
    text(left, y, "Voxfleet", 18)
    text(right, y, f"Invoice {invoice.number}", 14, "right")
    y -= 8 * mm
    text(right, y, f"Status: {invoice.get_status_display()}", 10, "right")
    text(left, y, f"Bill to: {invoice.tenant.name}", 11)
    y -= 5 * mm
    if invoice.tenant.billing_email:
        text(left, y, invoice.tenant.billing_email, 9)
    text(right, y, f"Period: {invoice.period_start:%Y-%m-%d} to {invoice.period_end:%Y-%m-%d} (exclusive)", 9, "right")
    y -= 12 * mm
    columns = [
        (left, "Description", "left"),
        (right - 70 * mm, "Quantity", "right"),
        (right - 35 * mm, "Unit price", "right"),
        (right, "Amount", "right"),
    ]
    for x, title, align in columns:
        text(x, y, title, 10, align)
    y -= 2 * mm
    pdf.setStrokeColor(colors.grey)
    pdf.line(left, y, right, y)
    y -= 6 * mm
    for line in invoice.lines.all():
        if y < 30 * mm:
            pdf.showPage()
            y = height - 25 * mm
        text(left, y, line.description[:70], 9)
        text(right - 70 * mm, y, _plain(line.quantity), 9, "right")
        text(right - 35 * mm, y, _plain(line.unit_price), 9, "right")
        text(right, y, _money(line.amount, invoice.currency), 9, "right")
        y -= 6 * mm
    pdf.line(left, y + 3 * mm, right, y + 3 * mm)
    y -= 3 * mm
    text(right - 35 * mm, y, "Total", 11, "right")
    text(right, y, _money(invoice.total, invoice.currency), 11, "right")
    if invoice.amount_prepaid:
        y -= 6 * mm
        text(right - 35 * mm, y, "Paid at purchase", 10, "right")
        text(right, y, _money(-invoice.amount_prepaid, invoice.currency), 10, "right")
        y -= 6 * mm
        text(right - 35 * mm, y, "Amount due", 11, "right")
        text(right, y, _money(invoice.amount_due, invoice.currency), 11, "right")
    pdf.showPage()
    pdf.save()
    return buf.getvalue()
