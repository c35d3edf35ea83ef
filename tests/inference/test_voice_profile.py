"""Voice profile: pitch on known tones, speaking rate, embedding, JSON round trip."""

from __future__ import annotations

import json

import numpy
import pytest

from inference.audio import VoiceProfile, extract_voice_profile, validate_prompt_audio
from tests.inference.speech_samples import SENTENCES, encode, speak, speech


@pytest.mark.parametrize("f0", [85.0, 110.0, 196.0, 261.6, 440.0])
@pytest.mark.parametrize("rate", [16000, 22050, 44100])
def test_pitch_of_a_harmonic_tone_within_5_percent(f0, rate):
    t = numpy.arange(int(rate * 3.5)) / rate
    tone = 0.4 * numpy.sin(2 * numpy.pi * f0 * t) + 0.2 * numpy.sin(2 * numpy.pi * 2 * f0 * t + 0.3)
    tone += 0.1 * numpy.sin(2 * numpy.pi * 3 * f0 * t + 1.1)
    profile = extract_voice_profile(tone.astype(numpy.float32), rate)
    assert profile.f0_median_hz == pytest.approx(f0, rel=0.05)
    assert profile.voiced_ratio > 0.9
    assert profile.f0_range_semitones < 1.0  # a steady tone has no melody


def test_pitch_of_a_glide_reports_its_range():
    rate = 16000
    t = numpy.arange(rate * 4) / rate
    f0 = 120.0 * 2 ** (t / 4)  # one octave up over 4 s
    tone = 0.5 * numpy.sin(2 * numpy.pi * numpy.cumsum(f0) / rate)
    profile = extract_voice_profile(tone.astype(numpy.float32), rate)
    assert profile.f0_p10_hz == pytest.approx(120 * 2**0.1, rel=0.05)
    assert profile.f0_p90_hz == pytest.approx(120 * 2**0.9, rel=0.05)
    assert profile.f0_range_semitones == pytest.approx(9.6, abs=1.0)


def test_silence_has_no_pitch_but_a_profile():
    profile = extract_voice_profile(numpy.zeros(16000 * 3, numpy.float32), 16000)
    assert profile.f0_median_hz is None and profile.gender_hint is None
    assert len(profile.embedding) == 192


def _profile_of(result, *, through_checks: bool = False):
    if not through_checks:  # engine output is all speech; skip the VAD pass to keep tests quick
        return extract_voice_profile(result.samples, result.sample_rate)
    prompt = validate_prompt_audio(encode(result.samples, result.sample_rate))
    return extract_voice_profile(prompt.decoded.samples, prompt.decoded.sample_rate, segments=prompt.segments)


def test_speech_profile_female_higher_than_male_and_json_round_trip():
    female = _profile_of(speech(6.0, "zh-female"), through_checks=True)
    male = _profile_of(speech(6.0, "zh-male"), through_checks=True)
    assert female.f0_median_hz > 1.4 * male.f0_median_hz
    assert female.gender_hint == "female" and male.gender_hint == "male"
    assert 2.0 < female.speaking_rate_sps < 7.0
    data = json.loads(json.dumps(female.to_dict()))
    again = VoiceProfile.from_dict(data)
    assert again == female
    assert again.similarity(female) == pytest.approx(1.0)


def test_embedding_is_deterministic_and_separates_voices():
    first = _profile_of(speak(SENTENCES["zh"], voice="zh-female", seed=1))
    second = _profile_of(speak(SENTENCES["zh"], voice="zh-female", seed=1))
    assert first.embedding == second.embedding
    same_voice_other_text = _profile_of(speak(SENTENCES["zh"][::-1], voice="zh-female", seed=2))
    other_voice = _profile_of(speak(SENTENCES["zh"], voice="zh-male", seed=1))
    assert numpy.linalg.norm(first.embedding) == pytest.approx(1.0, abs=1e-5)
    assert first.similarity(same_voice_other_text) > first.similarity(other_voice)


def test_speaking_rate_follows_tempo():
    slow = _profile_of(speak(SENTENCES["zh"], speed=0.7))
    fast = _profile_of(speak(SENTENCES["zh"], speed=1.4))
    assert fast.speaking_rate_sps > 1.4 * slow.speaking_rate_sps


def test_from_dict_refuses_unknown_version():
    data = extract_voice_profile(numpy.zeros(16000 * 3, numpy.float32), 16000).to_dict()
    data["version"] = 99
    with pytest.raises(ValueError, match="version"):
        VoiceProfile.from_dict(data)
