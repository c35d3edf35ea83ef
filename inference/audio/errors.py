"""Refusals of prompt audio; each has its own code and a message that says what to fix."""

from __future__ import annotations

from console.errors import VoxfleetError


class PromptAudioInvalid(VoxfleetError):
    """Base for every prompt-audio refusal (HTTP 400 unless stated)."""

    code = "invalid_prompt_audio"
    status = 400


class AudioTooLarge(PromptAudioInvalid):
    """The upload is over the 10 MB limit."""

    code = "audio_too_large"
    status = 413


class AudioEmpty(PromptAudioInvalid):
    """The upload has no bytes."""

    code = "audio_empty"


class AudioNotAudio(PromptAudioInvalid):
    """The bytes are not an audio file at all (a text or image file, say)."""

    code = "audio_not_audio"


class AudioFormatUnsupported(PromptAudioInvalid):
    """Audio in a container other than wav, flac, mp3 or ogg."""

    code = "audio_format_unsupported"


class AudioCorrupt(PromptAudioInvalid):
    """Looks like wav/flac/mp3/ogg but cannot be decoded (truncated or damaged)."""

    code = "audio_corrupt"


class AudioSampleRateTooLow(PromptAudioInvalid):
    """Recorded below 16 kHz: too little detail to clone a voice from."""

    code = "audio_sample_rate_too_low"


class AudioTooManyChannels(PromptAudioInvalid):
    """More than two channels: a prompt is one voice, recorded mono or stereo."""

    code = "audio_too_many_channels"


class AudioTooLong(PromptAudioInvalid):
    """The file lasts far longer than a prompt should, whatever its speech content."""

    code = "audio_too_long"


class AudioSilent(PromptAudioInvalid):
    """Digital silence or a level too low to hear anything."""

    code = "audio_silent"


class AudioNoSpeech(PromptAudioInvalid):
    """Sound, but no speech (noise, music, hum)."""

    code = "audio_no_speech"


class SpeechTooShort(PromptAudioInvalid):
    """Less than 3 s of speech."""

    code = "speech_too_short"


class SpeechTooLong(PromptAudioInvalid):
    """More than 15 s of speech."""

    code = "speech_too_long"


class AudioClipped(PromptAudioInvalid):
    """Heavy clipping (the level hit full scale and flattened) distorts the voice."""

    code = "audio_clipped"
