"""Sign-up, accepting an invitation, and switching the organisation a user acts for."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from billing.choices import SESSION_TENANT_KEY
from billing.selectors import membership_for_user
from console.errors import VoxfleetError
from console.portal import forms, services

# The form field each refusal of the portal's services is about (None: the whole form).
SIGNUP_ERROR_FIELDS = {"username_taken": "username", "organisation_taken": "organisation"}
INVITE_ACCEPT_ERROR_FIELDS = {"username_taken": "username"}


def signup(request):
    if request.user.is_authenticated:
        return redirect("portal:dashboard")
    form = forms.SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            user, tenant = services.signup_complete(
                username=d["username"],
                email=d["email"],
                password=d["password1"],
                organisation=d["organisation"],
                time_zone=d["time_zone"],
            )
        except VoxfleetError as exc:
            form.add_error(SIGNUP_ERROR_FIELDS.get(exc.code), exc.message)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, f"Welcome to Voxfleet. {tenant.name} is on the {tenant.plan.name} plan.")
            return redirect("portal:dashboard")
    return render(request, "portal/signup.html", {"form": form, "time_zones": forms.time_zone_names()})


@require_POST
@login_required
def tenant_switch(request):
    """Act for another of the user's tenants (portal pages and the session's API calls)."""
    try:
        tenant_id = int(request.POST.get("tenant", ""))
    except ValueError:
        raise Http404("No such organisation.") from None
    membership = membership_for_user(user=request.user, tenant_id=tenant_id)
    if membership is None or membership.tenant_id != tenant_id:
        raise Http404("No such organisation.")
    request.session[SESSION_TENANT_KEY] = tenant_id
    messages.success(request, f"You are now working in {membership.tenant.name}.")
    return redirect("portal:dashboard")


def invite_accept(request, token: str):
    try:
        invitation = services.invitation_read(token=token)
    except VoxfleetError as exc:
        return render(request, "portal/invite_invalid.html", {"error": exc.message}, status=exc.status)
    form = forms.InviteAcceptForm(request.POST or None) if not request.user.is_authenticated else None
    if request.method == "POST":
        try:
            if request.user.is_authenticated:
                user, tenant = services.invitation_accept(token=token, user=request.user)
            elif form.is_valid():
                user, tenant = services.invitation_accept(
                    token=token, username=form.cleaned_data["username"], password=form.cleaned_data["password1"]
                )
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            else:
                user = tenant = None
        except VoxfleetError as exc:
            if form is not None:
                form.add_error(INVITE_ACCEPT_ERROR_FIELDS.get(exc.code), exc.message)
            else:
                messages.error(request, exc.message)
        else:
            if tenant is not None:
                request.session[SESSION_TENANT_KEY] = tenant.pk
                messages.success(request, f"You joined {tenant.name}.")
                return redirect("portal:dashboard")
    return render(request, "portal/invite_accept.html", {"invitation": invitation, "form": form})
