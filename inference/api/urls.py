"""/api/v1/ synthesis URLs (mounted in console/urls.py)."""

from django.urls import path

from inference.api import views

urlpatterns = [
    path("voices", views.VoiceListCreateView.as_view(), name="api-voices"),
    path("voices/<str:voice_id>", views.VoiceDetailView.as_view(), name="api-voice"),
    path("jobs", views.JobListCreateView.as_view(), name="api-jobs"),
    path("jobs/<int:job_id>", views.JobDetailView.as_view(), name="api-job"),
    path("jobs/<int:job_id>/cancel", views.JobCancelView.as_view(), name="api-job-cancel"),
    path("jobs/<int:job_id>/audio", views.JobAudioView.as_view(), name="api-job-audio"),
    path("usage", views.UsageView.as_view(), name="api-usage"),
    path("quota", views.QuotaView.as_view(), name="api-quota"),
]
