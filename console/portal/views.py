"""Portal views: thin; reads come from selectors, writes from services."""

from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from billing.models import ApiKey, MembershipRole
from billing.services import api_key_create, api_key_revoke
from console.errors import VoxfleetError
from console.portal import forms, selectors, services


def tenant_required(view):
    """Login required, and the user acts for a tenant: sets request.tenant and request.membership."""

    @wraps(view)
    @login_required
    def wrapper(request, *args, **kwargs):
        membership = selectors.membership_for_user(user=request.user)
        if membership is None:
            if request.user.is_staff:
                return redirect("portal:staff_overview")
            return render(request, "portal/no_tenant.html", status=403)
        request.membership = membership
        request.tenant = membership.tenant
        request.is_owner = membership.role == MembershipRole.OWNER
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


def _form_error(form, exc: VoxfleetError, field: str | None = None) -> None:
    form.add_error(field, exc.message)


# --- sign-up and team -------------------------------------------------------------------


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
            field = {"username_taken": "username", "organisation_taken": "organisation"}.get(exc.code)
            _form_error(form, exc, field)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, f"Welcome to Voxfleet. {tenant.name} is on the {tenant.plan.name} plan.")
            return redirect("portal:dashboard")
    return render(request, "portal/signup.html", {"form": form})


@tenant_required
def team(request):
    form = forms.InviteForm(request.POST or None)
    invite_link = None
    if request.method == "POST":
        if not request.is_owner:
            messages.error(request, "Only the organisation's owner can invite members.")
            return redirect("portal:team")
        if form.is_valid():
            try:
                invite_link = services.invitation_send(
                    tenant=request.tenant,
                    email=form.cleaned_data["email"],
                    invited_by=request.user,
                    base_url=request.build_absolute_uri("/"),
                )
            except VoxfleetError as exc:
                _form_error(form, exc, "email")
            else:
                messages.success(request, f"Invitation sent to {form.cleaned_data['email']}.")
                form = forms.InviteForm()
    members = selectors.tenant_members(tenant=request.tenant)
    return render(request, "portal/team.html", {"form": form, "members": members, "invite_link": invite_link})


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
                _form_error(form, exc, "username" if exc.code == "username_taken" else None)
            else:
                messages.error(request, exc.message)
        else:
            if tenant is not None:
                messages.success(request, f"You joined {tenant.name}.")
                return redirect("portal:dashboard")
    return render(request, "portal/invite_accept.html", {"invitation": invitation, "form": form})


# --- API keys -----------------------------------------------------------------------------


@tenant_required
def api_keys(request):
    form = forms.ApiKeyForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        key, new_key = api_key_create(tenant=request.tenant, name=form.cleaned_data["name"], created_by=request.user)
        messages.success(request, f"Key “{key.name}” created. Copy it now: it is shown only once.")
        form = forms.ApiKeyForm()
    keys = ApiKey.objects.filter(tenant=request.tenant).select_related("created_by").order_by("-created_at")
    return render(request, "portal/api_keys.html", {"form": form, "keys": keys, "new_key": new_key})


@require_POST
@tenant_required
def api_key_revoke_view(request, key_id: int):
    key = ApiKey.objects.filter(tenant=request.tenant, pk=key_id).first()
    if key is None:
        raise Http404("No such key.")
    api_key_revoke(key=key)
    messages.success(request, f"Key {key.prefix}… revoked; requests with it are refused from now on.")
    return redirect("portal:api_keys")


# --- dashboard ----------------------------------------------------------------------------


@tenant_required
def dashboard(request):
    return render(request, "portal/dashboard.html", {})
