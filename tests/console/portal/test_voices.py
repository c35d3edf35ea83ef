"""Voices page: clone from prompt audio (the jobs service's checks shown inline), delete; outsiders 404."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from inference.models import Voice
from tests.inference.speech_samples import encode, speech


def _wav(seconds: float) -> SimpleUploadedFile:
    s = speech(seconds)
    samples = s.samples[: int(seconds * s.sample_rate)]
    return SimpleUploadedFile("prompt.wav", encode(samples, s.sample_rate), content_type="audio/wav")


@pytest.mark.django_db
def test_clone_voice_then_delete(owner_client, owner_tenant, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    r = owner_client.post("/voices/", {"name": "Narrator", "audio": _wav(5.0), "transcript": ""}, follow=True)
    assert "is ready" in r.content.decode()
    voice = Voice.objects.get(tenant=owner_tenant, name="Narrator")
    assert 4.5 < voice.prompt_duration_s < 5.5
    assert f"tenant-voice-{voice.pk}" in owner_client.get("/playground/").content.decode()
    r = owner_client.post(f"/voices/{voice.key}/delete", follow=True)
    assert "deleted" in r.content.decode()
    assert not Voice.objects.filter(pk=voice.pk).exists()


@pytest.mark.django_db
def test_too_short_prompt_is_refused_inline(owner_client, owner_tenant, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    r = owner_client.post("/voices/", {"name": "Short", "audio": _wav(1.5)})
    body = r.content.decode()
    assert r.status_code == 200
    assert '<span class="field-error" role="alert">The audio lasts only 1.5 s; at least 3 s' in body
    assert not Voice.objects.filter(tenant=owner_tenant).exists()


@pytest.mark.django_db
def test_outsider_cannot_delete_a_voice(owner_client, owner_tenant, outsider_client, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    owner_client.post("/voices/", {"name": "Mine", "audio": _wav(4.0)})
    voice = Voice.objects.get(tenant=owner_tenant)
    assert outsider_client.post(f"/voices/{voice.key}/delete").status_code == 404
    assert "Mine" not in outsider_client.get("/voices/").content.decode()
    assert Voice.objects.filter(pk=voice.pk).exists()


@pytest.mark.django_db
def test_signup_rejects_unknown_time_zone(client):
    r = client.post(
        "/signup/",
        {
            "organisation": "TZ Org",
            "username": "tzuser",
            "email": "tz@example.com",
            "password1": "a-long-passphrase",
            "password2": "a-long-passphrase",
            "time_zone": "Mars/Olympus",
        },
    )
    assert "Choose a time zone" in r.content.decode()
