"""The plan page: what each plan change would do, and the owner's change."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from billing.choices import PlanChangeKind
from billing.selectors import quota_get
from console.errors import VoxfleetError
from console.portal import selectors, services
from console.portal.views._access import owner_required, tenant_required


@tenant_required
def plan(request):
    context = selectors.plan_options(tenant=request.tenant)
    context.update(selectors.topups_for_tenant(tenant=request.tenant))
    context.update(
        {"tenant": request.tenant, "quota": quota_get(tenant=request.tenant), "idempotency_key": uuid.uuid4().hex}
    )
    return render(request, "portal/plan.html", context)


@require_POST
@owner_required
def plan_change_view(request):
    try:
        change = services.plan_change_request(tenant=request.tenant, plan_code=request.POST.get("plan", ""))
    except VoxfleetError as exc:
        messages.error(request, exc.message)
        return redirect("portal:plan")
    if change.cancelled_at:
        messages.success(
            request, f"The pending change to {change.to_plan.name} is cancelled; you stay on {change.from_plan.name}."
        )
    elif change.kind == PlanChangeKind.UPGRADE:
        charged = (
            f" {change.prorated_amount} {change.currency} charged for the rest of this month."
            if change.prorated_amount
            else ""
        )
        messages.success(request, f"You are now on the {change.to_plan.name} plan.{charged}")
    else:
        messages.success(
            request,
            f"Your plan changes to {change.to_plan.name} on {timezone.localtime(change.effective_at):%Y-%m-%d %H:%M %Z}; "
            f"until then you keep {change.from_plan.name}.",
        )
    return redirect("portal:plan")
