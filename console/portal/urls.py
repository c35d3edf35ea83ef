"""Portal URLs, mounted at "/" by console/urls.py."""

from django.urls import path

from console.portal import views

app_name = "portal"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("signup/", views.signup, name="signup"),
    path("team/", views.team, name="team"),
    path("invite/<str:token>/", views.invite_accept, name="invite_accept"),
    path("keys/", views.api_keys, name="api_keys"),
    path("keys/<int:key_id>/revoke/", views.api_key_revoke_view, name="api_key_revoke"),
]
