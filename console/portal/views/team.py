"""The team page: members, and the owner's invitations (send, withdraw) and member removal."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from billing.selectors import invitation_list_open_for_tenant, membership_list_for_tenant, membership_list_for_user
from billing.services import invitation_revoke, membership_remove
from console.errors import VoxfleetError
from console.portal import forms, services
from console.portal.views._access import owner_required, tenant_required


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
                # Every refusal of an invitation is about the address invited.
                form.add_error("email", exc.message)
            else:
                messages.success(request, f"Invitation sent to {form.cleaned_data['email']}.")
                form = forms.InviteForm()
    return render(
        request,
        "portal/team.html",
        {
            "form": form,
            "members": membership_list_for_tenant(tenant=request.tenant),
            "invitations": invitation_list_open_for_tenant(tenant=request.tenant) if request.is_owner else [],
            "invite_link": invite_link,
            "my_memberships": membership_list_for_user(user=request.user),
        },
    )


@require_POST
@owner_required
def invitation_revoke_view(request, invitation_id: int):
    try:
        invitation = invitation_revoke(tenant=request.tenant, invitation_id=invitation_id, revoked_by=request.user)
    except VoxfleetError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"The invitation of {invitation.email} is withdrawn; its link no longer works.")
    return redirect("portal:team")


@require_POST
@owner_required
def member_remove_view(request, membership_id: int):
    try:
        membership = membership_remove(tenant=request.tenant, membership_id=membership_id, removed_by=request.user)
    except VoxfleetError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{membership.user.get_username()} no longer has a seat in {request.tenant.name}.")
    return redirect("portal:team")
