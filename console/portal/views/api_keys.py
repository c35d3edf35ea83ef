"""The API keys page: create (the plaintext is shown once) and revoke."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from billing.selectors import api_key_list_for_tenant
from billing.services import api_key_create, api_key_revoke_for_tenant
from console.errors import NotFound, VoxfleetError
from console.portal import forms
from console.portal.views._access import tenant_required


@tenant_required
def api_keys(request):
    form = forms.ApiKeyForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        try:
            key, new_key = api_key_create(
                tenant=request.tenant,
                name=form.cleaned_data["name"],
                created_by=request.user,
                scopes=form.cleaned_data["scopes"],
                monthly_token_cap=form.cleaned_data["monthly_token_cap"],
            )
        except VoxfleetError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Key “{key.name}” created. Copy it now: it is shown only once.")
            form = forms.ApiKeyForm()
    keys = api_key_list_for_tenant(tenant=request.tenant)
    return render(request, "portal/api_keys.html", {"form": form, "keys": keys, "new_key": new_key})


@require_POST
@tenant_required
def api_key_revoke_view(request, key_id: int):
    try:
        key = api_key_revoke_for_tenant(tenant=request.tenant, key_id=key_id)
    except NotFound:
        raise Http404("No such key.") from None
    messages.success(request, f"Key {key.prefix}… revoked; requests with it are refused from now on.")
    return redirect("portal:api_keys")
