"""The one loaded engine of this process: load once, reload on ops "restart".

Engine layer (no Django models): the fleet agent of a GPU host and the embedded default's
executor both run jobs through ``engine_get()``; the agent's restart calls
``engine_clear_and_reload()``. Which engine: ``engine_configure`` (the host's ``--engine`` and
``--model-dir``), else the console's settings or the environment (``engine_create``).
"""

from __future__ import annotations

import os
import threading
import time

from inference.engines.base import SynthesisEngine, engine_create

_engine: SynthesisEngine | None = None
_engine_lock = threading.Lock()
_engine_name: str | None = None
_engine_model_dir: str | os.PathLike | None = None


def engine_configure(*, name: str | None = None, model_dir: str | os.PathLike | None = None) -> None:
    """Name this process's engine explicitly (a GPU host has no Django settings); before ``engine_get``."""
    global _engine_name, _engine_model_dir
    with _engine_lock:
        _engine_name, _engine_model_dir = name or None, model_dir or None


def _engine_new() -> SynthesisEngine:
    return engine_create(_engine_name, model_dir=_engine_model_dir)


def engine_get() -> SynthesisEngine:
    """The loaded engine of this process (``engine_configure``'s, else the configured one), loading it on first use."""
    global _engine
    engine = _engine
    if engine is not None:
        return engine
    with _engine_lock:
        if _engine is None:
            candidate = _engine_new()
            candidate.load()
            _engine = candidate
        return _engine


def engine_version_label(engine: SynthesisEngine) -> str:
    """What jobs record as ``engine_version``: replays are byte-identical only within one label."""
    return f"{engine.name}-{engine.version}"


def _vram_bytes() -> dict:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a runtime dependency
        return {}
    if not torch.cuda.is_available():
        return {}
    return {"allocated": int(torch.cuda.memory_allocated()), "reserved": int(torch.cuda.memory_reserved())}


def engine_clear_and_reload() -> dict:
    """Ops "restart": drop caches, unload, free VRAM and load the engine again.

    Returns ``{"vram_before": {...}, "vram_after": {...}, "engine": describe(), "reload_s": float}``
    with VRAM in bytes; the VRAM dicts are empty on hosts without CUDA.
    """
    global _engine
    with _engine_lock:
        before = _vram_bytes()
        started = time.perf_counter()
        if _engine is not None:
            try:
                _engine.clear_caches()
            finally:
                _engine.unload()
            _engine = None
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass
        fresh = _engine_new()
        fresh.load()
        _engine = fresh
        return {
            "vram_before": before,
            "vram_after": _vram_bytes(),
            "engine": fresh.describe(),
            "reload_s": round(time.perf_counter() - started, 3),
        }
