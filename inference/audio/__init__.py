"""Prompt audio: decoding, acceptance checks (VAD, clipping, limits) and voice profiles."""

from inference.audio.checks import (
    MAX_BYTES,
    MAX_SPEECH_S,
    MAX_TOTAL_S,
    MIN_SAMPLE_RATE,
    MIN_SPEECH_S,
    PromptAudio,
    clipping_ratio,
    validate_prompt_audio,
)
from inference.audio.decode import DecodedAudio, decode_audio, resample
from inference.audio.errors import (
    AudioClipped,
    AudioCorrupt,
    AudioEmpty,
    AudioFormatUnsupported,
    AudioNoSpeech,
    AudioNotAudio,
    AudioSampleRateTooLow,
    AudioSilent,
    AudioTooLarge,
    AudioTooLong,
    PromptAudioInvalid,
    SpeechTooLong,
    SpeechTooShort,
)
from inference.audio.profile import VoiceProfile, extract_voice_profile
from inference.audio.vad import SpeechSegment, speech_segments

__all__ = [
    "MAX_BYTES",
    "MAX_SPEECH_S",
    "MAX_TOTAL_S",
    "MIN_SAMPLE_RATE",
    "MIN_SPEECH_S",
    "AudioClipped",
    "AudioCorrupt",
    "AudioEmpty",
    "AudioFormatUnsupported",
    "AudioNoSpeech",
    "AudioNotAudio",
    "AudioSampleRateTooLow",
    "AudioSilent",
    "AudioTooLarge",
    "AudioTooLong",
    "DecodedAudio",
    "PromptAudio",
    "PromptAudioInvalid",
    "SpeechSegment",
    "SpeechTooLong",
    "SpeechTooShort",
    "VoiceProfile",
    "clipping_ratio",
    "decode_audio",
    "extract_voice_profile",
    "resample",
    "speech_segments",
    "validate_prompt_audio",
]
