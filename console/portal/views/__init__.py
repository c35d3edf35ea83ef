"""Portal views, one module per page; thin: reads from selectors, writes from services.

    accounts    sign-up, invitations, switching organisation
    team        members and invitations
    dashboard   quota, usage charts, recent jobs and their audio
    playground  the playground and its live quote
    api_keys    API keys
    plan        plan changes
    topups      top-up packs
    invoices    invoices
    alerts      usage alerts, webhooks and their delivery log
    voices      voices from prompt audio
    staff       the staff overview

``_access`` holds the decorators (tenant_required, owner_required). Every view is
re-exported here for console/portal/urls.py.
"""

from __future__ import annotations

from console.portal.views._access import owner_required, tenant_required
from console.portal.views.accounts import invite_accept, signup, tenant_switch
from console.portal.views.alerts import alerts, webhook_delivery_replay_view, webhook_endpoint_delete_view
from console.portal.views.api_keys import api_key_revoke_view, api_keys
from console.portal.views.dashboard import dashboard, job_audio
from console.portal.views.invoices import invoices
from console.portal.views.plan import plan, plan_change_view
from console.portal.views.playground import playground, playground_quote
from console.portal.views.staff import staff_overview
from console.portal.views.team import invitation_revoke_view, member_remove_view, team
from console.portal.views.topups import topup_buy
from console.portal.views.voices import voice_delete_view, voices

__all__ = [
    "alerts",
    "webhook_delivery_replay_view",
    "webhook_endpoint_delete_view",
    "api_key_revoke_view",
    "api_keys",
    "dashboard",
    "invitation_revoke_view",
    "invite_accept",
    "invoices",
    "job_audio",
    "member_remove_view",
    "owner_required",
    "plan",
    "plan_change_view",
    "playground",
    "playground_quote",
    "signup",
    "staff_overview",
    "team",
    "tenant_required",
    "tenant_switch",
    "topup_buy",
    "voice_delete_view",
    "voices",
]
