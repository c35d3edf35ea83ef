"""The team page: members, and the owner's invitations."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render

from billing.selectors import membership_list_for_tenant, membership_list_for_user
from console.errors import VoxfleetError
from console.portal import forms, services
from console.portal.views._access import tenant_required


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
            "invite_link": invite_link,
            "my_memberships": membership_list_for_user(user=request.user),
        },
    )
