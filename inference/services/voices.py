"""Voices: a tenant's cloned voices from prompt audio (create, rename, delete)."""

from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from console.errors import Conflict, VoxfleetError
from inference.audio import extract_voice_profile, validate_prompt_audio
from inference.choices import VoiceGender
from inference.engines.base import PRESET_VOICES
from inference.models import Voice
from inference.text import LANGUAGES, detect_language

VOICE_NAME_MAX = 64
TRANSCRIPT_MAX = 500


def _voices_dir() -> Path:
    return Path(settings.VAR_DIR) / "voices"


def _voice_name_clean(name: str) -> str:
    clean = " ".join(str(name or "").split())
    if not clean:
        raise VoxfleetError("A voice needs a name.", code="invalid_voice_name", param="name")
    if len(clean) > VOICE_NAME_MAX:
        raise VoxfleetError(
            f"Voice names are at most {VOICE_NAME_MAX} characters.", code="invalid_voice_name", param="name"
        )
    return clean


def _voice_name_free(*, tenant, name: str, exclude_pk: int | None = None) -> None:
    taken = Voice.objects.filter(tenant=tenant, name__iexact=name)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    lowered = name.lower()
    if taken.exists() or any(lowered in (p.key.lower(), p.display_name.lower()) for p in PRESET_VOICES):
        raise Conflict(f"A voice named {name!r} already exists.", code="voice_name_taken", param="name")


def voice_create(
    *,
    tenant,
    name: str,
    audio: bytes,
    transcript: str = "",
    language: str | None = None,
    gender: str | None = None,
    created_by=None,
) -> Voice:
    """A tenant voice from prompt audio: checks the audio, extracts the profile, stores the file."""
    name = _voice_name_clean(name)
    _voice_name_free(tenant=tenant, name=name)
    transcript = " ".join(str(transcript or "").split())
    if len(transcript) > TRANSCRIPT_MAX:
        raise VoxfleetError(
            f"The transcript is at most {TRANSCRIPT_MAX} characters.", code="invalid_transcript", param="transcript"
        )
    if language is not None and language not in LANGUAGES:
        raise VoxfleetError(
            f"Unknown language {language!r}; use {', '.join(LANGUAGES[:-1])} or {LANGUAGES[-1]}.",
            code="invalid_language",
            param="language",
        )
    if gender is not None and gender not in VoiceGender.values:
        raise VoxfleetError("Gender must be female or male.", code="invalid_gender", param="gender")
    prompt = validate_prompt_audio(audio)
    profile = extract_voice_profile(prompt.decoded.samples, prompt.decoded.sample_rate, segments=prompt.segments)
    if gender is None:
        gender = profile.gender_hint or VoiceGender.FEMALE
    if language is None:
        language = detect_language(transcript) if transcript else "zh"

    relative = f"{tenant.pk}/{uuid.uuid4().hex}.{prompt.decoded.format}"
    path = _voices_dir() / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(audio)
    try:
        with transaction.atomic():
            voice = Voice.objects.create(
                tenant=tenant,
                name=name,
                language=language,
                gender=gender,
                prompt_audio=relative,
                prompt_transcript=transcript,
                prompt_duration_s=round(float(prompt.duration_s), 3),
                prompt_sample_rate=int(prompt.decoded.sample_rate),
                profile=profile.to_dict(),
                created_by=created_by,
            )
    except IntegrityError:
        path.unlink(missing_ok=True)
        raise Conflict(f"A voice named {name!r} already exists.", code="voice_name_taken", param="name") from None
    except Exception:
        path.unlink(missing_ok=True)
        raise
    return voice


def voice_rename(*, voice: Voice, name: str) -> Voice:
    name = _voice_name_clean(name)
    _voice_name_free(tenant=voice.tenant, name=name, exclude_pk=voice.pk)
    try:
        with transaction.atomic():
            Voice.objects.filter(pk=voice.pk).update(name=name, updated_at=timezone.now())
    except IntegrityError:
        raise Conflict(f"A voice named {name!r} already exists.", code="voice_name_taken", param="name") from None
    voice.refresh_from_db()
    return voice


def voice_delete(*, voice: Voice) -> None:
    """Delete the voice and, after commit, its prompt audio; finished jobs keep their audio."""
    path = _voices_dir() / voice.prompt_audio
    with transaction.atomic():
        voice.delete()
        transaction.on_commit(lambda: path.unlink(missing_ok=True))
