"""Portal URLs, mounted at "/" by console/urls.py."""

from django.urls import path

from console.portal import views

app_name = "portal"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("signup/", views.signup, name="signup"),
    path("team/", views.team, name="team"),
    path("team/switch", views.tenant_switch, name="tenant_switch"),
    path("team/invitations/<int:invitation_id>/revoke", views.invitation_revoke_view, name="invitation_revoke"),
    path("team/members/<int:membership_id>/remove", views.member_remove_view, name="member_remove"),
    path("invite/<str:token>/", views.invite_accept, name="invite_accept"),
    path("playground/", views.playground, name="playground"),
    path("playground/quote", views.playground_quote, name="playground_quote"),
    path("jobs/<int:job_id>/audio", views.job_audio, name="job_audio"),
    path("plan/", views.plan, name="plan"),
    path("plan/change", views.plan_change_view, name="plan_change"),
    path("plan/topup", views.topup_buy, name="topup_buy"),
    path("invoices/", views.invoices, name="invoices"),
    path("voices/", views.voices, name="voices"),
    path("voices/<str:voice_id>/delete", views.voice_delete_view, name="voice_delete"),
    path("staff/", views.staff_overview, name="staff_overview"),
    path("alerts/", views.alerts, name="alerts"),
    path("alerts/webhooks/<int:endpoint_id>/delete", views.webhook_endpoint_delete_view, name="webhook_delete"),
    path("alerts/deliveries/<int:delivery_id>/replay", views.webhook_delivery_replay_view, name="delivery_replay"),
    path("keys/", views.api_keys, name="api_keys"),
    path("keys/<int:key_id>/revoke/", views.api_key_revoke_view, name="api_key_revoke"),
]
