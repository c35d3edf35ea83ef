"""Decode prompt-audio bytes (wav, flac, mp3, ogg) to mono float32 with libsndfile.

The libsndfile bundled with the ``soundfile`` wheel (1.2.x) reads MP3 and Ogg
Vorbis/Opus itself, so no ffmpeg is needed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy
import soundfile

from inference.audio.errors import AudioCorrupt, AudioEmpty, AudioFormatUnsupported, AudioNotAudio

# libsndfile's major-format names for the containers the product accepts.
ACCEPTED_FORMATS = {"WAV": "wav", "WAVEX": "wav", "RF64": "wav", "FLAC": "flac", "MP3": "mp3", "OGG": "ogg"}


@dataclass(frozen=True)
class DecodedAudio:
    """Mono samples in [-1, 1] with the file's own sample rate."""

    samples: numpy.ndarray
    sample_rate: int
    format: str  # wav | flac | mp3 | ogg
    channels: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / float(self.sample_rate)


def sniff_format(data: bytes) -> str | None:
    """Container named by the file's magic bytes, or ``None`` when it is none we know."""
    head = data[:16]
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0):
        return "mp3"
    if head[:4] in (b"FORM", b".snd", b"caff") or head[:4] == b"\x30\x26\xb2\x75":
        return "other-audio"  # AIFF, AU, CAF, WMA/ASF: audio, but not a format we take
    return None


@dataclass(frozen=True)
class AudioHeader:
    """What the file's header says, read without decoding a sample (``soundfile.info``)."""

    format: str  # wav | flac | mp3 | ogg
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / float(self.sample_rate) if self.sample_rate > 0 else 0.0


def audio_probe(data: bytes) -> AudioHeader:
    """Read the header only; raise a ``PromptAudioInvalid`` subclass when it is no audio we take."""
    if not data:
        raise AudioEmpty("The audio file is empty (0 bytes).")
    sniffed = sniff_format(data)
    try:
        info = soundfile.info(io.BytesIO(data))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
        if sniffed is None:
            raise AudioNotAudio(
                "This file is not audio we can read. Upload a WAV, FLAC, MP3 or OGG recording."
            ) from None
        if sniffed == "other-audio":
            raise AudioFormatUnsupported("This audio format is not supported. Use WAV, FLAC, MP3 or OGG.") from None
        raise AudioCorrupt(
            f"The {sniffed.upper()} file is damaged or incomplete and cannot be decoded. Export it again and re-upload."
        ) from None
    container = ACCEPTED_FORMATS.get(info.format)
    if container is None:
        raise AudioFormatUnsupported(
            f"{info.format_info or info.format} audio is not supported. Use WAV, FLAC, MP3 or OGG."
        )
    return AudioHeader(
        format=container, sample_rate=int(info.samplerate), channels=int(info.channels), frames=max(0, int(info.frames))
    )


def decode_audio(data: bytes, *, max_frames: int | None = None) -> DecodedAudio:
    """Decode ``data`` (at most ``max_frames`` frames: a header that lies about its length
    still cannot make us decode more); raise a ``PromptAudioInvalid`` subclass saying what is wrong."""
    header = audio_probe(data)
    container = header.format
    try:
        samples, sample_rate = soundfile.read(
            io.BytesIO(data), dtype="float32", always_2d=True, frames=-1 if max_frames is None else max_frames
        )
    except (soundfile.LibsndfileError, RuntimeError, ValueError):
        raise AudioCorrupt(
            f"The {container.upper()} file is damaged or incomplete and cannot be decoded. Export it again and re-upload."
        ) from None
    if samples.shape[0] == 0:
        raise AudioCorrupt(f"The {container.upper()} file contains no audio frames.")
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if not numpy.all(numpy.isfinite(mono)):
        raise AudioCorrupt(f"The {container.upper()} file contains invalid sample values.")
    return DecodedAudio(
        samples=numpy.ascontiguousarray(mono, dtype=numpy.float32),
        sample_rate=int(sample_rate),
        format=container,
        channels=int(samples.shape[1]),
    )


def resample(samples: numpy.ndarray, source_rate: int, target_rate: int) -> numpy.ndarray:
    """Band-limited resampling by FFT (exact for the product's short clips, no extra deps)."""
    if source_rate == target_rate:
        return samples.astype(numpy.float32, copy=False)
    count = int(round(len(samples) * target_rate / source_rate))
    if count == 0:
        return numpy.zeros(0, dtype=numpy.float32)
    spectrum = numpy.fft.rfft(samples.astype(numpy.float64))
    bins = count // 2 + 1
    if bins <= len(spectrum):
        spectrum = spectrum[:bins]
    else:
        spectrum = numpy.concatenate([spectrum, numpy.zeros(bins - len(spectrum), dtype=spectrum.dtype)])
    out = numpy.fft.irfft(spectrum, n=count) * (count / len(samples))
    return out.astype(numpy.float32)
