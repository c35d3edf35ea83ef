"""Synthesis engines behind one interface (``inference.engines.base``) and the process's loaded engine (``.registry``)."""

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
from inference.engines.registry import engine_clear_and_reload, engine_configure, engine_get, engine_version_label

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
    "engine_clear_and_reload",
    "engine_configure",
    "engine_create",
    "engine_get",
    "engine_version_label",
]
