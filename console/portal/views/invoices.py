"""The invoices page (downloads are billing's own view, billing.views)."""

from __future__ import annotations

from django.shortcuts import render

from billing.selectors import invoice_list_for_tenant
from console.portal.views._access import tenant_required


@tenant_required
def invoices(request):
    return render(
        request,
        "portal/invoices.html",
        {"tenant": request.tenant, "invoices": invoice_list_for_tenant(tenant=request.tenant)},
    )
