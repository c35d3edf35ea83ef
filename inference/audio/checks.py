"""Prompt-audio acceptance rules (PRODUCT.md, Synthesis request rules).

3–15 s of speech, at least 16 kHz, wav/flac/mp3/ogg, at most 10 MB; silence, noise
without speech, heavy clipping, non-audio and corrupt files are refused, each with its
own error code and a message that says what is wrong and what to do.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass

import numpy

from inference.audio.decode import DecodedAudio, audio_probe, decode_audio, resample
from inference.audio.errors import (
    AudioClipped,
    AudioNoSpeech,
    AudioSampleRateTooLow,
    AudioSilent,
    AudioTooLarge,
    AudioTooLong,
    AudioTooManyChannels,
    SpeechTooLong,
    SpeechTooShort,
)
from inference.audio.vad import VAD_RATE, SpeechSegment, speech_segments

MAX_BYTES = 10 * 1024 * 1024
MIN_SAMPLE_RATE = 16000
# Decoding cost is frames x channels: both are bounded from the header before any decoding.
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 2
MIN_SPEECH_S = 3.0
MAX_SPEECH_S = 15.0
# A prompt may carry silence around its speech, but not minutes of it: decoding and
# VAD time grow with the file, and a long file is nearly always the wrong file.
MAX_TOTAL_S = 30.0
SILENCE_PEAK = 10 ** (-60 / 20)  # -60 dBFS
# Share of the audible samples sitting on a flat top at full scale (or beyond it).
CLIPPING_MAX_RATIO = 0.01


@dataclass(frozen=True)
class PromptAudio:
    """Prompt audio that passed every check, with what the checks measured."""

    decoded: DecodedAudio
    samples_16k: numpy.ndarray
    segments: tuple[SpeechSegment, ...]
    clipping_ratio: float

    @property
    def duration_s(self) -> float:
        return self.decoded.duration_s

    @property
    def speech_start_s(self) -> float:
        return self.segments[0].start_s

    @property
    def speech_end_s(self) -> float:
        return self.segments[-1].end_s

    @property
    def speech_duration_s(self) -> float:
        """From the first word to the last (pauses between words included)."""
        return round(self.speech_end_s - self.speech_start_s, 3)

    @property
    def voiced_s(self) -> float:
        """Sum of the speech segments alone."""
        return round(sum(segment.duration_s for segment in self.segments), 3)

    def speech_wav_bytes(self, *, margin_s: float = 0.2) -> bytes:
        """The speech span (plus a margin) as 16-bit mono WAV at the file's own rate."""
        rate = self.decoded.sample_rate
        start = max(0, int((self.speech_start_s - margin_s) * rate))
        end = min(len(self.decoded.samples), int((self.speech_end_s + margin_s) * rate))
        pcm = numpy.rint(numpy.clip(self.decoded.samples[start:end], -1, 1) * 32767).astype("<i2")
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(pcm.tobytes())
        return buffer.getvalue()


def clipping_ratio(samples: numpy.ndarray) -> float:
    """Share of audible samples that are clipped.

    Clipping shows as flat tops: three or more consecutive samples holding the same
    extreme value (PCM files), or as values beyond full scale (lossy codecs decode a
    clipped signal with overshoot). A clean peak is curved, so it does not count.
    """
    magnitude = numpy.abs(samples)
    peak = float(magnitude.max()) if magnitude.size else 0.0
    audible = int(numpy.count_nonzero(magnitude > 0.01))
    if peak < 0.3 or audible == 0:
        return 0.0
    near_top = magnitude >= 0.98 * min(peak, 1.0)
    flat = numpy.abs(numpy.diff(samples)) < 1e-6
    # Sample i is on a plateau when it equals both neighbours (a run of >= 3).
    plateau = numpy.zeros_like(near_top)
    plateau[1:-1] = near_top[1:-1] & flat[:-1] & flat[1:]
    plateau[:-2] |= plateau[1:-1]
    plateau[2:] |= plateau[1:-1]
    over = magnitude > 1.0
    return float(numpy.count_nonzero(plateau | over)) / audible


def _header_check(header) -> None:
    """Refuse from the header alone (no sample decoded): rate, channels and length."""
    if header.sample_rate < MIN_SAMPLE_RATE:
        raise AudioSampleRateTooLow(
            f"The audio is sampled at {header.sample_rate} Hz; at least {MIN_SAMPLE_RATE} Hz is needed "
            "(telephone-quality 8 kHz audio is too coarse to clone a voice).",
            sample_rate=header.sample_rate,
        )
    if header.sample_rate > MAX_SAMPLE_RATE:
        raise AudioSampleRateTooLow(
            f"The audio is sampled at {header.sample_rate} Hz; at most {MAX_SAMPLE_RATE} Hz is accepted "
            "(export it at 44.1 or 48 kHz).",
            code="audio_sample_rate_too_high",
            sample_rate=header.sample_rate,
        )
    if header.channels > MAX_CHANNELS:
        raise AudioTooManyChannels(
            f"The audio has {header.channels} channels; upload a mono or stereo recording of one voice.",
            channels=header.channels,
        )
    if header.duration_s > MAX_TOTAL_S:
        raise AudioTooLong(
            f"The audio lasts {header.duration_s:.1f} s; upload at most {MAX_TOTAL_S:.0f} s "
            f"containing {MIN_SPEECH_S:.0f} to {MAX_SPEECH_S:.0f} s of speech.",
            duration_s=round(header.duration_s, 2),
        )


def validate_prompt_audio(data: bytes) -> PromptAudio:
    """Run every check on uploaded prompt-audio bytes; return the measurements or raise.

    Raises (all ``PromptAudioInvalid``): ``AudioTooLarge`` (413), ``AudioEmpty``,
    ``AudioNotAudio``, ``AudioFormatUnsupported``, ``AudioCorrupt``,
    ``AudioSampleRateTooLow``, ``AudioTooManyChannels``, ``AudioTooLong``, ``AudioSilent``, ``AudioClipped``,
    ``AudioNoSpeech``, ``SpeechTooShort``, ``SpeechTooLong``.
    """
    if len(data) > MAX_BYTES:
        raise AudioTooLarge(
            f"The audio file is {len(data) / 1_048_576:.1f} MB; the limit is {MAX_BYTES // 1_048_576} MB. "
            "Upload 3 to 15 seconds of speech.",
            size_bytes=len(data),
            limit_bytes=MAX_BYTES,
        )
    header = audio_probe(data)
    _header_check(header)
    # A header may understate its length (or not know it, as some MP3s): never decode more
    # than the longest acceptable file, whatever it says.
    decoded = decode_audio(data, max_frames=int(MAX_TOTAL_S * header.sample_rate) + 1)
    if decoded.sample_rate < MIN_SAMPLE_RATE:
        raise AudioSampleRateTooLow(
            f"The audio is sampled at {decoded.sample_rate} Hz; at least {MIN_SAMPLE_RATE} Hz is needed "
            "(telephone-quality 8 kHz audio is too coarse to clone a voice).",
            sample_rate=decoded.sample_rate,
        )
    if decoded.duration_s > MAX_TOTAL_S:
        raise AudioTooLong(
            f"The audio lasts {decoded.duration_s:.1f} s; upload at most {MAX_TOTAL_S:.0f} s "
            f"containing {MIN_SPEECH_S:.0f} to {MAX_SPEECH_S:.0f} s of speech.",
            duration_s=round(decoded.duration_s, 2),
        )
    peak = float(numpy.max(numpy.abs(decoded.samples)))
    if peak < SILENCE_PEAK:
        raise AudioSilent("The audio is silent: nothing louder than -60 dBFS was recorded. Check the microphone.")
    if decoded.duration_s < MIN_SPEECH_S:
        raise SpeechTooShort(
            f"The audio lasts only {decoded.duration_s:.1f} s; at least {MIN_SPEECH_S:.0f} s of speech is needed "
            "(3 to 10 s works best).",
            speech_s=round(decoded.duration_s, 2),
        )
    ratio = clipping_ratio(decoded.samples)
    if ratio > CLIPPING_MAX_RATIO:
        raise AudioClipped(
            f"The audio is heavily clipped ({ratio:.1%} of it is flattened at full scale), which distorts the "
            "voice. Record again with the input level lower.",
            clipping_ratio=round(ratio, 4),
        )
    samples_16k = resample(decoded.samples, decoded.sample_rate, VAD_RATE)
    segments = speech_segments(samples_16k)
    if not segments:
        raise AudioNoSpeech(
            "No speech was found in the audio (it sounds like noise, music or silence). "
            "Upload a recording of one person speaking."
        )
    prompt = PromptAudio(decoded=decoded, samples_16k=samples_16k, segments=tuple(segments), clipping_ratio=ratio)
    if prompt.speech_duration_s < MIN_SPEECH_S:
        raise SpeechTooShort(
            f"Only {prompt.speech_duration_s:.1f} s of speech was found; at least {MIN_SPEECH_S:.0f} s is needed "
            "(3 to 10 s works best).",
            speech_s=prompt.speech_duration_s,
        )
    if prompt.speech_duration_s > MAX_SPEECH_S:
        raise SpeechTooLong(
            f"The audio holds {prompt.speech_duration_s:.1f} s of speech; at most {MAX_SPEECH_S:.0f} s is used "
            "(3 to 10 s works best). Trim it and upload again.",
            speech_s=prompt.speech_duration_s,
        )
    return prompt
