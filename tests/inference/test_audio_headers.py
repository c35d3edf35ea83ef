"""Prompt audio is refused from its header (soundfile.info) before any sample is decoded."""

from __future__ import annotations

import io

import numpy
import pytest
import soundfile

from inference.audio import (
    AudioSampleRateTooLow,
    AudioTooLong,
    AudioTooManyChannels,
    audio_probe,
    validate_prompt_audio,
)


def _flac(seconds: float, rate: int, channels: int) -> bytes:
    buf = io.BytesIO()
    frames = int(seconds * rate)
    with soundfile.SoundFile(buf, "w", samplerate=rate, channels=channels, format="FLAC") as f:
        block = numpy.zeros((min(frames, rate), channels), dtype="int16")
        left = frames
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)
    return buf.getvalue()


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if any sample is decoded."""

    def refuse(*args, **kwargs):
        raise AssertionError("soundfile.read was called: the file was decoded before the header checks")

    monkeypatch.setattr(soundfile, "read", refuse)


def test_eight_channel_96k_file_is_refused_from_its_header(no_decoding):
    data = _flac(1.0, 96_000, 8)
    header = audio_probe(data)
    assert (header.channels, header.sample_rate) == (8, 96_000)
    with pytest.raises(AudioTooManyChannels) as info:
        validate_prompt_audio(data)
    assert info.value.extra["channels"] == 8 and info.value.status == 400


def test_long_file_is_refused_from_its_header(no_decoding):
    data = _flac(45.0, 16_000, 1)
    assert len(data) < 200_000  # tiny on disk, long in time: the shape of the 40 GB attack
    with pytest.raises(AudioTooLong) as info:
        validate_prompt_audio(data)
    assert info.value.extra["duration_s"] == pytest.approx(45.0)


def test_rates_out_of_range_are_refused_from_the_header(no_decoding):
    with pytest.raises(AudioSampleRateTooLow):
        validate_prompt_audio(_flac(4.0, 8_000, 1))
    with pytest.raises(AudioSampleRateTooLow) as info:
        validate_prompt_audio(_flac(0.5, 384_000, 1))
    assert info.value.code == "audio_sample_rate_too_high"


def test_decoding_is_bounded_even_if_the_header_understates_the_length(monkeypatch):
    """A header that says 3 s cannot make the decoder read 45 s: at most MAX_TOTAL_S of frames."""
    from inference.audio import checks
    from inference.audio.decode import AudioHeader

    data = _flac(45.0, 16_000, 1)
    monkeypatch.setattr(checks, "audio_probe", lambda d: AudioHeader("flac", 16_000, 1, 48_000))
    seen = {}
    real_read = soundfile.read

    def spy(*args, **kwargs):
        seen["frames"] = kwargs.get("frames")
        return real_read(*args, **kwargs)

    monkeypatch.setattr(soundfile, "read", spy)
    with pytest.raises(AudioTooLong):
        validate_prompt_audio(data)
    assert seen["frames"] == int(checks.MAX_TOTAL_S * 16_000) + 1
