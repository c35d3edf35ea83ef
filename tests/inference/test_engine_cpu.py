"""The embedded CPU engine speaks every language, follows voice and instruction, replays exactly."""

from __future__ import annotations

import io
import wave
from dataclasses import replace

import numpy
import pytest

from console.errors import VoxfleetError
from inference.audio import extract_voice_profile, resample, speech_segments
from inference.engines import (
    PRESET_VOICES,
    PRESET_VOICES_BY_KEY,
    EngineUnavailable,
    LanguageUnsupported,
    SynthesisRequest,
    SynthesisResult,
    engine_create,
)
from inference.engines.cpu import CpuEngine, pitch_for_f0
from inference.engines.frontend import FrontEnd, Run, arpabet_to_phonemes, chinese_number
from inference.text import parse_instruction
from tests.inference.speech_samples import SENTENCES, cpu_engine, rms, speak


def _speech_seconds(result: SynthesisResult) -> float:
    segments = speech_segments(resample(result.samples, result.sample_rate, 16000))
    return sum(segment.duration_s for segment in segments)


@pytest.mark.parametrize("voice", [voice.key for voice in PRESET_VOICES])
def test_every_preset_voice_speaks_its_language(voice):
    language = PRESET_VOICES_BY_KEY[voice].language
    result = speak(SENTENCES[language], voice=voice)
    assert result.sample_rate == 22050
    assert result.samples.dtype == numpy.float32
    assert result.duration_s > 1.5
    assert rms(result.samples) > 0.05
    # Silero VAD (an independent model) hears speech in most of it.
    assert _speech_seconds(result) > 0.6 * result.duration_s


def test_presets_cover_female_and_male_for_each_language():
    pairs = {(voice.language, voice.gender) for voice in PRESET_VOICES}
    for language in ("zh", "yue", "en", "ja"):
        assert {(language, "female"), (language, "male")} <= pairs
    assert all(voice.display_name for voice in PRESET_VOICES)
    assert len({voice.key for voice in PRESET_VOICES}) == len(PRESET_VOICES)


def test_same_request_gives_identical_bytes_and_another_seed_differs():
    first = speak(SENTENCES["zh"], seed=42).to_wav_bytes()
    assert speak(SENTENCES["zh"], seed=42).to_wav_bytes() == first
    assert speak(SENTENCES["zh"], seed=43).to_wav_bytes() != first
    english = speak(SENTENCES["en"], voice="en-male", seed=7).to_wav_bytes()  # Piper path
    assert speak(SENTENCES["en"], voice="en-male", seed=7).to_wav_bytes() == english
    # Piper's seed only moves the tempo (+-5 %), which shows once a phoneme's frame count
    # rounds differently: most seeds differ on a full sentence, not every pair does.
    takes = {speak(SENTENCES["en"], voice="en-male", seed=seed).to_wav_bytes() for seed in range(1, 5)}
    assert len(takes) >= 2


def test_fresh_engine_replays_identical_bytes():
    request = SynthesisRequest(
        text="你好[laughter]，Hello [M][AY0][N][UW1][T]!",
        language="zh",
        voice=PRESET_VOICES_BY_KEY["zh-male"],
        instruction=parse_instruction("开心地，大声一点"),
        seed=123456,
    )
    other = CpuEngine()
    other.load()
    try:
        assert other.version == cpu_engine().version
        assert other.synthesize(request).to_wav_bytes() == cpu_engine().synthesize(request).to_wav_bytes()
    finally:
        other.unload()


def test_wav_and_pcm_bytes():
    result = speak("你好，世界")
    data = result.to_wav_bytes()
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 22050)
        assert wav.getnframes() == len(result.samples)
    pcm = result.to_pcm_bytes()
    assert len(pcm) == 2 * len(result.samples) and data.endswith(pcm)
    assert result.duration_s == pytest.approx(len(result.samples) / 22050)


def test_instruction_speed_and_volume():
    text = SENTENCES["zh"]
    plain = speak(text)
    slow = speak(text, instruction=parse_instruction("说得慢一点"))
    fast = speak(text, instruction=parse_instruction("faster"))
    assert slow.duration_s > 1.15 * plain.duration_s > 1.15 * fast.duration_s
    assert speak(text, speed=0.5).duration_s > 1.6 * plain.duration_s
    loud = speak(text, instruction=parse_instruction("大声说"))
    soft = speak(text, instruction=parse_instruction("小声说"))
    assert rms(loud.samples) > 2 * rms(soft.samples)


def test_emotion_changes_pitch():
    text = SENTENCES["zh"]

    def f0(result):
        return extract_voice_profile(result.samples, result.sample_rate).f0_median_hz

    assert f0(speak(text, instruction=parse_instruction("开心地说"))) > f0(
        speak(text, instruction=parse_instruction("sadly"))
    )


def test_cantonese_dialect_instruction_switches_to_cantonese():
    result = speak("今天天气很好", instruction=parse_instruction("用粤语说"))
    assert result.info["language"] == "yue"
    assert speak("今天天气很好").info["language"] == "zh"


@pytest.mark.parametrize(("gender", "target"), [("male", 110.0), ("male", 140.0), ("female", 190.0), ("female", 250.0)])
def test_cloned_voice_pitch_is_followed(gender, target):
    profile = {"f0_median_hz": target, "speaking_rate_sps": 3.8}
    result = speak(SENTENCES["zh"], voice=f"zh-{gender}", key="tenant-voice-1", gender=gender, profile=profile)
    measured = extract_voice_profile(result.samples, result.sample_rate).f0_median_hz
    assert measured == pytest.approx(target, rel=0.15)


def test_cloned_voice_rate_is_followed():
    def duration(rate):
        return speak(SENTENCES["zh"], key="tenant-voice-2", profile={"speaking_rate_sps": rate}).duration_s

    assert duration(3.0) > 1.3 * duration(5.0)


def test_tags_are_spoken():
    plain = speak("你好")
    assert speak("你好[laughter]").duration_s > plain.duration_s + 0.3
    assert speak("你好[breath]你好").duration_s > 2 * plain.duration_s - 0.3
    word = speak("[M][AY0][N][UW1][T]", voice="en-female")
    assert word.duration_s > 0.3 and rms(word.samples) > 0.05
    # The phonemes are spoken as one word, nothing else (no markup read aloud).
    assert word.duration_s == pytest.approx(speak("minute", voice="en-female").duration_s, abs=0.3)
    assert speak("[M][AY0][N][UW1][T]", voice="en-male").duration_s < 1.0  # Piper path


def test_front_end_routes_scripts_and_tags():
    front = FrontEnd()
    assert front.runs("她的爱好[h][ào]是跑步", "zh") == [Run("zh", "ta1 de5 ai4 hao4 shi4 pao3 bu4")]
    # A tag that is not a reading of the character before it is its own syllable.
    assert front.runs("对报道[j][ǐ]予", "zh") == [Run("zh", "dui4 bao4 dao4 ji3 yu3")]
    assert [run.kind for run in front.runs("我用iPhone拍照", "zh")] == ["zh", "en", "zh"]
    assert front.runs("今日は良い天気", "ja") == [Run("ja", "こんにちはよいてんき")]
    assert [run.kind for run in front.runs("Hi [M][AY0] 你好 [cough]", "en")] == ["en", "en-phonemes", "zh", "sound"]
    assert front.runs("有2024个", "zh") == [Run("zh", "you3 er4 qian1 ling2 er4 shi2 si4 ge4")]


@pytest.mark.parametrize(
    ("number", "spoken"),
    [
        (0, "零"),
        (10, "十"),
        (15, "十五"),
        (110, "一百一十"),
        (1005, "一千零五"),
        (10010, "一万零一十"),
        (2024, "二千零二十四"),
    ],
)
def test_chinese_numbers(number, spoken):
    assert chinese_number(number) == spoken


def test_arpabet_conversion():
    assert arpabet_to_phonemes("M AY0 N UW1 T", ipa=True) == "maɪnˈuːt"
    assert arpabet_to_phonemes("HH AH0 L OW1", ipa=False) == "h@l'oU"


def test_pitch_mapping_is_monotonic():
    values = [pitch_for_f0(f, "female") for f in (100, 150, 200, 250, 300, 400)]
    assert values == sorted(values) and values[0] == 0 and values[-1] == 99


def test_refusals():
    with pytest.raises(LanguageUnsupported):
        speak("bonjour", voice="en-female", language="fr")
    for seed in (0, 100_000_001, -5, "12"):
        with pytest.raises(VoxfleetError, match="Seed"):
            SynthesisRequest(text="x", language="zh", voice=PRESET_VOICES[0], instruction=None, seed=seed)
    with pytest.raises(VoxfleetError, match="Speed"):
        SynthesisRequest(text="x", language="zh", voice=PRESET_VOICES[0], instruction=None, seed=1, speed=10)
    with pytest.raises(VoxfleetError) as caught:
        speak("，。！")
    assert caught.value.code == "nothing_to_say"


def test_unloaded_engine_refuses_and_describe():
    engine = CpuEngine()
    request = SynthesisRequest(text="x", language="zh", voice=PRESET_VOICES[0], instruction=None, seed=1)
    with pytest.raises(EngineUnavailable):
        engine.synthesize(request)
    facts = cpu_engine().describe()
    assert facts["device"] == "cpu" and facts["loaded"] is True
    assert set(facts["languages"]) >= {"zh", "yue", "en", "ja"}
    cpu_engine().clear_caches()
    assert cpu_engine().synthesize(request).duration_s > 0.1


def test_engine_create_by_name_and_setting(settings):
    assert isinstance(engine_create("cpu"), CpuEngine)
    settings.VOXFLEET_ENGINE = "cpu"
    assert isinstance(engine_create(), CpuEngine)
    with pytest.raises(EngineUnavailable, match="Unknown engine"):
        engine_create("festival")


def test_result_rejects_stereo_and_clips():
    with pytest.raises(ValueError):
        SynthesisResult(samples=numpy.zeros((10, 2)), sample_rate=22050)
    result = SynthesisResult(samples=numpy.array([2.0, -2.0, 0.5]), sample_rate=8000)
    assert result.samples.tolist() == [1.0, -1.0, 0.5]
    assert result.to_pcm_bytes() == numpy.array([32767, -32767, 16384], "<i2").tobytes()


def test_piper_free_engine_still_speaks_english():
    engine = CpuEngine(use_piper=False)
    engine.load()
    voice = replace(PRESET_VOICES_BY_KEY["en-male"])
    result = engine.synthesize(
        SynthesisRequest(text=SENTENCES["en"], language="en", voice=voice, instruction=None, seed=1)
    )
    assert engine.version != cpu_engine().version  # the determinism contract tells them apart
    assert result.duration_s > 2 and rms(result.samples) > 0.05


def test_stream_yields_one_piece_per_sentence_and_equals_the_whole():
    engine = cpu_engine()
    voice = PRESET_VOICES_BY_KEY["zh-female"]
    request = SynthesisRequest(
        text="今天天气很好。我们去公园散步吧！你觉得怎么样？", language="zh", voice=voice, instruction=None, seed=7
    )
    pieces = list(engine.synthesize_stream(request))
    # One piece per sentence, then the closing silence.
    assert len(pieces) == 4 and all(piece.sample_rate == 22050 and piece.samples.size for piece in pieces)
    assert float(numpy.max(numpy.abs(pieces[-1].samples))) == 0.0
    whole = engine.synthesize(request)
    assert numpy.array_equal(numpy.concatenate([piece.samples for piece in pieces]), whole.samples)


@pytest.mark.parametrize("speed", [0.25, 4.0])
def test_speed_has_openais_meaning_at_the_ends_of_its_range(speed):
    text = SENTENCES["zh"]
    plain = speak(text).duration_s
    # OpenAI's speed: the same speech played `speed` times faster (silences included).
    assert speak(text, speed=speed).duration_s == pytest.approx(plain / speed, rel=0.12)
