"""Portal URLs, mounted at "/" by console/urls.py."""

from django.urls import path

from console.portal import views

app_name = "portal"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
]
