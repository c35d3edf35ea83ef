"""The voices page: create a voice from prompt audio, delete one."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from console.errors import VoxfleetError
from console.portal import forms, selectors
from console.portal.views._access import tenant_required
from inference.selectors import voice_get_own
from inference.services import voice_create, voice_delete

# The VoiceForm field a refusal of voice_create is about, by the ``param`` it names. The
# prompt-audio checks name none: they are all about the audio (too short, silent, corrupt...).
VOICE_ERROR_FIELDS = {"name": "name", "audio": "audio", "transcript": "transcript"}
VOICE_ERROR_DEFAULT_FIELD = "audio"
# The API's limit is 10 MB; one byte more is read so that the service reports an oversize file.
VOICE_UPLOAD_READ_BYTES = 10 * 1024 * 1024 + 1


@tenant_required
def voices(request):
    form = forms.VoiceForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        audio = d["audio"].read(VOICE_UPLOAD_READ_BYTES)
        try:
            voice = voice_create(
                tenant=request.tenant, name=d["name"], audio=audio, transcript=d["transcript"], created_by=request.user
            )
        except VoxfleetError as exc:
            form.add_error(VOICE_ERROR_FIELDS.get(exc.extra.get("param"), VOICE_ERROR_DEFAULT_FIELD), exc.message)
        else:
            messages.success(
                request, f"Voice “{voice.name}” is ready ({voice.prompt_duration_s:.1f} s of prompt audio)."
            )
            return redirect("portal:voices")
    return render(
        request,
        "portal/voices.html",
        {"tenant": request.tenant, "voices": selectors.voices_for_tenant(tenant=request.tenant), "form": form},
    )


@require_POST
@tenant_required
def voice_delete_view(request, voice_id: str):
    try:
        voice = voice_get_own(tenant=request.tenant, voice_id=voice_id)
    except VoxfleetError:
        raise Http404("No such voice.") from None
    name = voice.name
    voice_delete(voice=voice)
    messages.success(request, f"Voice “{name}” deleted; audio already made with it stays available.")
    return redirect("portal:voices")
