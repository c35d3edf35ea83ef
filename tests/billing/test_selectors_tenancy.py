"""billing.selectors.tenant_for_user: the selected tenant if the user has a seat there, else the oldest."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser

from billing.selectors import membership_for_user, tenant_for_user
from billing.services import membership_add


def test_selected_tenant_is_membership_checked(make_tenant):
    first = make_tenant("free")
    second = make_tenant("pro")
    outsider = make_tenant("pro")
    user = first.test_owner
    membership_add(tenant=second, user=user)
    assert tenant_for_user(user=user, tenant_id=None) == first
    assert tenant_for_user(user=user, tenant_id=second.pk) == second
    assert tenant_for_user(user=user, tenant_id=str(second.pk)) == second  # as a session may hold it
    # A tenant the user has no seat in is ignored, never trusted.
    assert tenant_for_user(user=user, tenant_id=outsider.pk) == first
    assert tenant_for_user(user=user, tenant_id="not-a-number") == first
    assert membership_for_user(user=user, tenant_id=second.pk).role == "member"


def test_no_tenant_for_anonymous_or_seatless_users(make_tenant, staff_user):
    make_tenant("free")
    assert tenant_for_user(user=AnonymousUser(), tenant_id=None) is None
    assert tenant_for_user(user=staff_user, tenant_id=None) is None
