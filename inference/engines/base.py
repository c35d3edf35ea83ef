"""The one synthesis-engine interface the jobs, the fleet agent and the API code against.

Determinism contract: for a given engine ``name`` and ``version``, the same request text,
language, voice, instruction, seed and speed produce byte-identical ``to_wav_bytes()``.
Bump ``version`` whenever a change would alter the audio for an existing request.
"""

from __future__ import annotations

import importlib
import io
import os
import sys
import wave
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy

from console.errors import VoxfleetError
from inference.audio.encode import pcm16
from inference.text.instruction import Instruction

SEED_MIN = 1
SEED_MAX = 100_000_000
SPEED_MIN = 0.25
SPEED_MAX = 4.0


class EngineUnavailable(VoxfleetError):
    """The engine cannot start or run here: runtime, device or model files are missing."""

    code = "engine_unavailable"
    status = 503


class LanguageUnsupported(VoxfleetError):
    """The request asks for a language the engine does not speak."""

    code = "language_unsupported"
    status = 400


class SynthesisFailed(VoxfleetError):
    """The engine ran but could not produce audio for this request."""

    code = "synthesis_failed"
    status = 500


@dataclass(frozen=True)
class VoiceSpec:
    """What an engine needs to speak in a voice (a preset or a tenant's cloned voice)."""

    key: str  # preset key e.g. "zh-female" or "tenant-voice-<id>"
    language: str  # default language of the voice: zh, yue, en, ja, ko
    gender: str  # "female" | "male"
    profile: dict | None = None  # VoiceProfile.to_dict() for cloned voices
    prompt_audio_path: str | None = None
    prompt_transcript: str | None = None
    display_name: str = ""


@dataclass(frozen=True)
class SynthesisRequest:
    """One utterance to synthesize; ``text`` is already validated and normalized."""

    text: str
    language: str
    voice: VoiceSpec
    instruction: Instruction | None
    seed: int
    speed: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or not SEED_MIN <= self.seed <= SEED_MAX:
            raise VoxfleetError(
                f"Seed must be an integer from {SEED_MIN} to {SEED_MAX:,}, got {self.seed!r}.", code="invalid_seed"
            )
        if not SPEED_MIN <= float(self.speed) <= SPEED_MAX:
            raise VoxfleetError(
                f"Speed must be between {SPEED_MIN} and {SPEED_MAX}, got {self.speed!r}.", code="invalid_speed"
            )

    @property
    def effective_speed(self) -> float:
        """Request speed times the instruction's speed ("说得慢一点" → 0.8)."""
        factor = self.instruction.speed if self.instruction else 1.0
        return float(self.speed) * factor


@dataclass
class SynthesisResult:
    """Synthesized mono audio; ``samples`` are float32 in [-1, 1]."""

    samples: numpy.ndarray
    sample_rate: int
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        samples = numpy.asarray(self.samples, dtype=numpy.float32)
        if samples.ndim != 1:
            raise ValueError(f"samples must be mono (1-D), got shape {samples.shape}")
        self.samples = numpy.clip(samples, -1.0, 1.0)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / float(self.sample_rate)

    def to_pcm_bytes(self) -> bytes:
        """Raw 16-bit little-endian signed PCM, mono, at ``sample_rate`` (no header)."""
        # Round (not truncate) so the mapping is symmetric; the result depends only on
        # the float samples, which keeps the bytes deterministic.
        return pcm16(self.samples)

    def to_wav_bytes(self) -> bytes:
        """A 16-bit PCM mono WAV file; identical samples give identical bytes."""
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(int(self.sample_rate))
            wav.writeframes(self.to_pcm_bytes())
        return buffer.getvalue()


class SynthesisEngine(ABC):
    """A text-to-speech engine. ``load()`` before ``synthesize()``; ``unload()`` frees it."""

    name: str = ""
    version: str = ""
    languages: frozenset[str] = frozenset()

    @abstractmethod
    def load(self) -> None:
        """Heavy start-up. Raises ``EngineUnavailable`` naming what is missing."""

    @abstractmethod
    def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        """Speak ``request``; deterministic for the same request and engine version."""

    def synthesize_stream(self, request: SynthesisRequest) -> Iterator[SynthesisResult]:
        """Speak ``request`` in pieces as they are ready (same sample rate throughout).

        Concatenated, the pieces are exactly ``synthesize(request)``'s samples, so a streamed
        and a whole response of the same request carry the same audio. Engines that cannot
        stream yield one piece.
        """
        yield self.synthesize(request)

    @abstractmethod
    def clear_caches(self) -> None:
        """Drop caches (and ``torch.cuda.empty_cache()`` on CUDA); used by ops "restart"."""

    @abstractmethod
    def unload(self) -> None:
        """Release the model and its memory; ``load()`` may be called again later."""

    @abstractmethod
    def describe(self) -> dict:
        """Facts for the fleet view: name, version, device, languages, VRAM…"""

    def check_language(self, language: str) -> None:
        if language not in self.languages:
            raise LanguageUnsupported(
                f"The {self.name} engine does not speak {language!r}; it speaks {', '.join(sorted(self.languages))}.",
                language=language,
            )


_ENGINE_CLASSES = {
    "cpu": "inference.engines.cpu:CpuEngine",
    "cosyvoice3": "inference.engines.cosyvoice3:CosyVoice3Engine",
}
_ENGINES_WITH_MODEL_DIR = frozenset({"cosyvoice3"})


def django_setting(name: str):
    """``settings.<name>`` where this process runs Django (the console), else None.

    A GPU host (``python -m fleetagent``) imports no Django: its engine is named by the CLI
    (``engine_configure``) or the environment, so this never imports ``django.conf`` itself.
    """
    conf = sys.modules.get("django.conf")
    if conf is None or not conf.settings.configured:
        return None
    return getattr(conf.settings, name, None)


def _configured_engine_name() -> str:
    return django_setting("VOXFLEET_ENGINE") or os.environ.get("VOXFLEET_ENGINE", "cpu")


def engine_create(name: str | None = None, *, model_dir: str | os.PathLike | None = None) -> SynthesisEngine:
    """A new, not yet loaded engine: ``name`` or ``settings.VOXFLEET_ENGINE`` / ``VOXFLEET_ENGINE`` (cpu|cosyvoice3).

    ``model_dir`` is the CosyVoice 3 model folder (default ``COSYVOICE_MODEL_DIR``); the CPU
    engine has no model folder.
    """
    chosen = name or _configured_engine_name()
    target = _ENGINE_CLASSES.get(chosen)
    if target is None:
        raise EngineUnavailable(f"Unknown engine {chosen!r}; choose one of {', '.join(sorted(_ENGINE_CLASSES))}.")
    module_name, class_name = target.split(":")
    engine_class = getattr(importlib.import_module(module_name), class_name)
    return engine_class(model_dir) if chosen in _ENGINES_WITH_MODEL_DIR else engine_class()


def _preset(key: str, language: str, gender: str, display_name: str) -> VoiceSpec:
    return VoiceSpec(key=key, language=language, gender=gender, display_name=display_name)


# Available to every tenant. Keys are stable identifiers stored on jobs; display names
# are what people see in the portal and may change.
PRESET_VOICES: list[VoiceSpec] = [
    _preset("zh-female", "zh", "female", "Xiaomei (Mandarin, female)"),
    _preset("zh-male", "zh", "male", "Jianguo (Mandarin, male)"),
    _preset("yue-female", "yue", "female", "Wing (Cantonese, female)"),
    _preset("yue-male", "yue", "male", "Ka-ming (Cantonese, male)"),
    _preset("en-female", "en", "female", "Emma (English, female)"),
    _preset("en-male", "en", "male", "Joe (English, male)"),
    _preset("ja-female", "ja", "female", "Sakura (Japanese, female)"),
    _preset("ja-male", "ja", "male", "Haruto (Japanese, male)"),
    _preset("ko-female", "ko", "female", "Ji-woo (Korean, female)"),
    _preset("ko-male", "ko", "male", "Min-jun (Korean, male)"),
]
PRESET_VOICES_BY_KEY: dict[str, VoiceSpec] = {voice.key: voice for voice in PRESET_VOICES}
