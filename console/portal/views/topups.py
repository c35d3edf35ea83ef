"""Buying a top-up pack (listed on the plan page)."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.http import require_POST

from console.errors import VoxfleetError
from console.portal import services
from console.portal.views._access import owner_required


@require_POST
@owner_required
def topup_buy(request):
    try:
        topup = services.topup_buy(
            tenant=request.tenant,
            pack_code=request.POST.get("pack", ""),
            idempotency_key=request.POST.get("idempotency_key") or None,
        )
    except VoxfleetError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"{topup.tokens:,} tokens added, valid until {timezone.localtime(topup.expires_at):%Y-%m-%d}. "
            f"Charged {topup.price} {topup.currency}.",
        )
    return redirect("portal:plan")
