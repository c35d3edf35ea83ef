"""Synthesis engines behind one interface (``inference.engines.base``)."""

from inference.engines.base import (
    PRESET_VOICES,
    PRESET_VOICES_BY_KEY,
    SEED_MAX,
    SEED_MIN,
    EngineUnavailable,
    LanguageUnsupported,
    SynthesisEngine,
    SynthesisFailed,
    SynthesisRequest,
    SynthesisResult,
    VoiceSpec,
    engine_create,
)

__all__ = [
    "PRESET_VOICES",
    "PRESET_VOICES_BY_KEY",
    "SEED_MAX",
    "SEED_MIN",
    "EngineUnavailable",
    "LanguageUnsupported",
    "SynthesisEngine",
    "SynthesisFailed",
    "SynthesisRequest",
    "SynthesisResult",
    "VoiceSpec",
    "engine_create",
]
