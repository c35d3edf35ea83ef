"""Who may see a portal page: the decorators every tenant page uses (private to the views)."""

from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils import timezone

from billing.choices import SESSION_TENANT_KEY, MembershipRole
from billing.selectors import membership_for_user


def tenant_required(view):
    """Login required, and the user acts for a tenant: sets request.tenant and request.membership."""

    @wraps(view)
    @login_required
    def wrapper(request, *args, **kwargs):
        membership = membership_for_user(user=request.user, tenant_id=request.session.get(SESSION_TENANT_KEY))
        if membership is None:
            if request.user.is_staff:
                return redirect("portal:staff_overview")
            return render(request, "portal/no_tenant.html", status=403)
        request.membership = membership
        request.tenant = membership.tenant
        request.is_owner = membership.role == MembershipRole.OWNER
        # Dates on the pages read in the tenant's time zone (where its Free quota resets).
        with timezone.override(membership.tenant.tz):
            return view(request, *args, **kwargs)

    return wrapper


def owner_required(view):
    @wraps(view)
    @tenant_required
    def wrapper(request, *args, **kwargs):
        if not request.is_owner:
            messages.error(request, "Only the organisation's owner can do that.")
            return redirect("portal:dashboard")
        return view(request, *args, **kwargs)

    return wrapper
