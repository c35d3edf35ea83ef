"""/v1/ OpenAI-compatible URLs (mounted in console/urls.py)."""

from django.urls import path

from console.openai_api import views

urlpatterns = [
    path("audio/speech", views.SpeechView.as_view(), name="openai-speech"),
    path("models", views.ModelsView.as_view(), name="openai-models"),
    path("models/<str:model_id>", views.ModelDetailView.as_view(), name="openai-model"),
]
