"""Real speech for the inference tests, made with the embedded CPU engine (no files checked in)."""

from __future__ import annotations

import io
from dataclasses import replace
from functools import lru_cache

import numpy
import soundfile

from inference.engines import PRESET_VOICES_BY_KEY, SynthesisRequest, SynthesisResult, engine_create
from inference.engines.cpu import CpuEngine

SENTENCES = {
    "zh": "今天天气很好，我们一起去公园散步吧。然后去吃午饭，好不好？",
    "yue": "今日天氣好好，我哋一齊去公園散步啦。",
    "en": "The quick brown fox jumps over the lazy dog, and then it runs into the forest.",
    "ja": "今日は良い天気ですね。一緒に公園を散歩しましょう。",
    "ko": "오늘은 날씨가 좋네요. 같이 공원에 산책하러 가요.",
}


@lru_cache(maxsize=1)
def cpu_engine() -> CpuEngine:
    engine = engine_create("cpu")
    engine.load()
    return engine


def speak(
    text: str,
    *,
    voice: str = "zh-female",
    seed: int = 1,
    instruction=None,
    speed: float = 1.0,
    language: str | None = None,
    **voice_changes,
):
    spec = PRESET_VOICES_BY_KEY[voice]
    if voice_changes:
        spec = replace(spec, **voice_changes)
    request = SynthesisRequest(
        text=text, language=language or spec.language, voice=spec, instruction=instruction, seed=seed, speed=speed
    )
    return cpu_engine().synthesize(request)


@lru_cache(maxsize=8)
def speech(seconds: float = 6.0, voice: str = "zh-female") -> SynthesisResult:
    """At least ``seconds`` of continuous speech (sentences joined with 0.2 s pauses)."""
    language = PRESET_VOICES_BY_KEY[voice].language
    pieces: list[numpy.ndarray] = []
    total = 0.0
    seed = 1
    while total < seconds:
        result = speak(SENTENCES[language], voice=voice, seed=seed)
        pieces.append(result.samples)
        pieces.append(numpy.zeros(int(0.2 * result.sample_rate), dtype=numpy.float32))
        total += result.duration_s + 0.2
        seed += 1
    return SynthesisResult(samples=numpy.concatenate(pieces), sample_rate=result.sample_rate)


def encode(samples: numpy.ndarray, sample_rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def rms(samples: numpy.ndarray) -> float:
    return float(numpy.sqrt(numpy.mean(numpy.square(samples, dtype=numpy.float64))))
