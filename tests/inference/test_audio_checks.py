"""Prompt-audio checks on real (CPU-engine) speech and on deliberately bad files."""

from __future__ import annotations

import numpy
import pytest

from console.errors import VoxfleetError
from inference import audio
from inference.audio import MAX_BYTES, decode_audio, resample, validate_prompt_audio
from tests.inference.speech_samples import encode, speak, speech


def _six_seconds():
    result = speech(6.0)
    return result.samples, result.sample_rate


@pytest.mark.parametrize(("fmt", "container"), [("WAV", "wav"), ("FLAC", "flac"), ("MP3", "mp3"), ("OGG", "ogg")])
def test_real_speech_is_accepted_in_every_format(fmt, container):
    samples, rate = _six_seconds()
    prompt = validate_prompt_audio(encode(samples, rate, fmt))
    assert prompt.decoded.format == container
    assert prompt.decoded.sample_rate == rate
    assert 5.0 < prompt.speech_duration_s <= prompt.duration_s + 0.05
    assert prompt.clipping_ratio == 0.0


def test_stereo_48k_is_mixed_to_mono():
    samples, rate = _six_seconds()
    high = resample(samples, rate, 48000)
    stereo = numpy.stack([high, high * 0.5], axis=1)
    prompt = validate_prompt_audio(encode(stereo, 48000, "FLAC"))
    assert prompt.decoded.channels == 2 and prompt.decoded.samples.ndim == 1
    assert prompt.decoded.sample_rate == 48000


def test_leading_and_trailing_silence_do_not_count_as_speech():
    samples, rate = _six_seconds()
    padded = numpy.concatenate([numpy.zeros(rate * 4, numpy.float32), samples, numpy.zeros(rate * 4, numpy.float32)])
    prompt = validate_prompt_audio(encode(padded, rate))
    assert prompt.speech_start_s == pytest.approx(4.0, abs=0.4)
    assert prompt.speech_duration_s == pytest.approx(
        validate_prompt_audio(encode(samples, rate)).speech_duration_s, abs=0.4
    )
    trimmed = decode_audio(prompt.speech_wav_bytes())
    assert trimmed.duration_s < padded.size / rate - 6


def _error_for(data: bytes) -> audio.PromptAudioInvalid:
    with pytest.raises(audio.PromptAudioInvalid) as caught:
        validate_prompt_audio(data)
    return caught.value


def _noise(seconds: float, rate: int, level: float) -> numpy.ndarray:
    return (numpy.random.default_rng(3).standard_normal(int(seconds * rate)) * level).astype(numpy.float32)


def test_each_bad_file_gets_its_own_error():
    samples, rate = _six_seconds()
    short = speak("你好").samples
    long_speech = speech(18.0)
    cases = {
        "too large": (b"RIFF" + b"\0" * (MAX_BYTES + 1), audio.AudioTooLarge, 413),
        "empty": (b"", audio.AudioEmpty, 400),
        "text renamed .wav": (("hello, this is not audio\n" * 40).encode(), audio.AudioNotAudio, 400),
        "png image": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, audio.AudioNotAudio, 400),
        "wav header only": (encode(samples, rate)[:30], audio.AudioCorrupt, 400),
        "RIFF garbage": (b"RIFF\x10\0\0\0WAVEjunk" + bytes(range(200)), audio.AudioCorrupt, 400),
        "flac garbage": (b"fLaC" + bytes(reversed(range(256))) * 8, audio.AudioCorrupt, 400),
        "aiff": (encode(samples, rate, "AIFF"), audio.AudioFormatUnsupported, 400),
        "8 kHz": (encode(resample(samples, rate, 8000), 8000), audio.AudioSampleRateTooLow, 400),
        "digital silence": (encode(numpy.zeros(rate * 5, numpy.float32), rate), audio.AudioSilent, 400),
        "white noise": (encode(_noise(5, rate, 0.2), rate), audio.AudioNoSpeech, 400),
        "clipped": (encode(numpy.clip(samples * 12, -1, 1), rate), audio.AudioClipped, 400),
        "too short file": (encode(short, rate), audio.SpeechTooShort, 400),
        "short speech in long silence": (
            encode(numpy.concatenate([short, numpy.zeros(rate * 5, numpy.float32)]), rate),
            audio.SpeechTooShort,
            400,
        ),
        "too much speech": (encode(long_speech.samples, rate), audio.SpeechTooLong, 400),
        "file too long": (
            encode(numpy.concatenate([samples, numpy.zeros(rate * 30, numpy.float32)]), rate),
            audio.AudioTooLong,
            400,
        ),
    }
    codes = set()
    for name, (data, error_type, status) in cases.items():
        error = _error_for(data)
        assert type(error) is error_type, f"{name}: got {type(error).__name__}: {error.message}"
        assert error.status == status, name
        assert isinstance(error, VoxfleetError)
        assert len(error.message) > 20, name
        codes.add(error.code)
    assert len(codes) == len({error_type for _, error_type, _ in cases.values()})


def test_messages_say_what_is_wrong():
    samples, rate = _six_seconds()
    assert "8000 Hz" in _error_for(encode(resample(samples, rate, 8000), 8000)).message
    assert "10 MB" in _error_for(b"x" * (MAX_BYTES + 10)).message
    assert "No speech" in _error_for(encode(_noise(5, rate, 0.2), rate)).message
    assert "silent" in _error_for(encode(numpy.zeros(rate * 5, numpy.float32), rate)).message
    too_long = _error_for(encode(speech(18.0).samples, rate))
    assert "15 s" in too_long.message and too_long.extra["speech_s"] > 15


def test_clipped_mp3_is_refused_too():
    samples, rate = _six_seconds()
    error = _error_for(encode(numpy.clip(samples * 12, -1, 1), rate, "MP3"))
    assert isinstance(error, audio.AudioClipped)


def test_loud_but_clean_speech_passes_clipping_check():
    samples, rate = _six_seconds()
    louder = samples / numpy.max(numpy.abs(samples)) * 0.999
    assert validate_prompt_audio(encode(louder, rate, "FLAC")).clipping_ratio < 0.01


def test_resample_keeps_a_tone():
    rate = 22050
    tone = numpy.sin(2 * numpy.pi * 440 * numpy.arange(rate) / rate).astype(numpy.float32)
    out = resample(tone, rate, 16000)
    assert out.size == 16000
    spectrum = numpy.abs(numpy.fft.rfft(out))
    assert abs(int(numpy.argmax(spectrum)) - 440) <= 1


def test_speech_over_background_noise_is_accepted():
    samples, rate = _six_seconds()
    noise = _noise(len(samples) / rate, rate, 1.0)[: len(samples)]
    noise *= rms_of(samples) / rms_of(noise) / 10 ** (10 / 20)  # 10 dB SNR
    prompt = validate_prompt_audio(encode(samples + noise, rate))
    assert prompt.speech_duration_s > 5.0


def rms_of(samples):
    return float(numpy.sqrt(numpy.mean(numpy.square(samples, dtype=numpy.float64))))
