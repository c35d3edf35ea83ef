"""Invoice downloads for staff and the invoice's own tenant members (everyone else: 404)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.views.decorators.http import require_GET

from billing.rendering import invoice_render_csv, invoice_render_pdf
from billing.selectors import invoice_get_for_user
from console.errors import NotFound


@require_GET
@login_required
def invoice_download(request, invoice_id: int, fmt: str):
    try:
        invoice = invoice_get_for_user(user=request.user, invoice_id=invoice_id)
    except NotFound:
        raise Http404("No such invoice.") from None
    filename = f"{invoice.number}.{fmt}"
    if fmt == "pdf":
        response = HttpResponse(invoice_render_pdf(invoice), content_type="application/pdf")
    else:
        response = HttpResponse(invoice_render_csv(invoice), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
