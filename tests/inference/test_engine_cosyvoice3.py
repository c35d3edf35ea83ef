"""CosyVoice 3 engine: start-up errors, prompt building and request planning.

The GPU path itself (loading real weights, fp16 synthesis) needs a CUDA host with the
runtime and a model directory; that test is skipped elsewhere with the reason.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from inference.engines import PRESET_VOICES_BY_KEY, EngineUnavailable, SynthesisRequest, VoiceSpec, engine_create
from inference.engines.cosyvoice3 import (
    END_OF_PROMPT,
    REQUIRED_DIRS,
    REQUIRED_FILES,
    CosyVoice3Engine,
    build_cross_lingual_text,
    build_instruct_prompt,
    build_zero_shot_prompt,
    model_dir_check,
    plan_request,
)
from inference.text import parse_instruction


def _model_dir(tmp_path: Path, *, skip: tuple[str, ...] = ()) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name in REQUIRED_FILES:
        if name not in skip:
            (tmp_path / name).write_bytes(b"placeholder")
    for name in REQUIRED_DIRS:
        if name not in skip:
            (tmp_path / name).mkdir()
    return tmp_path


def test_missing_model_dir_is_named(tmp_path):
    engine = CosyVoice3Engine(tmp_path / "nowhere")
    with pytest.raises(EngineUnavailable) as caught:
        engine.load()
    assert caught.value.code == "engine_model_missing" and caught.value.status == 503
    assert str(tmp_path / "nowhere") in caught.value.message
    assert "COSYVOICE_MODEL_DIR" in caught.value.message


@pytest.mark.parametrize(
    "missing",
    [
        ("llm.pt",),
        ("flow.pt", "hift.pt"),
        ("speech_tokenizer_v3.onnx", "campplus.onnx"),
        ("cosyvoice3.yaml",),
        REQUIRED_FILES,
    ],
)
def test_each_missing_file_is_named(tmp_path, missing):
    engine = CosyVoice3Engine(_model_dir(tmp_path, skip=missing))
    with pytest.raises(EngineUnavailable) as caught:
        engine.load()
    for name in missing:
        assert name in caught.value.message
    for name in set(REQUIRED_FILES) - set(missing):
        assert name not in caught.value.extra["missing"]
    assert sorted(caught.value.extra["missing"]) == sorted(missing)


def test_missing_tokenizer_folder_is_named(tmp_path):
    with pytest.raises(EngineUnavailable, match="CosyVoice-BlankEN/"):
        model_dir_check(_model_dir(tmp_path, skip=("CosyVoice-BlankEN",)))


def test_complete_dir_without_runtime_says_runtime_missing(tmp_path, monkeypatch):
    assert model_dir_check(_model_dir(tmp_path)) == tmp_path
    # A "cosyvoice" package that is not importable stands for a host without the runtime.
    monkeypatch.setitem(sys.modules, "cosyvoice", None)
    with pytest.raises(EngineUnavailable) as caught:
        CosyVoice3Engine(tmp_path).load()
    assert caught.value.code == "engine_runtime_missing"
    assert "CosyVoice runtime cannot be imported" in caught.value.message
    assert "requirements-gpu.txt" in caught.value.message


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this host has CUDA")
def test_runtime_present_but_no_cuda(tmp_path, monkeypatch):
    # Only the runtime's import surface is faked: the external package is not installed here.
    runtime = tmp_path / "runtime" / "cosyvoice" / "cli"
    runtime.mkdir(parents=True)
    (runtime.parent / "__init__.py").write_text("")
    (runtime / "__init__.py").write_text("")
    (runtime / "cosyvoice.py").write_text("def AutoModel(**kwargs):\n    raise AssertionError('must not load')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "runtime"))
    for name in [m for m in sys.modules if m == "cosyvoice" or m.startswith("cosyvoice.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(EngineUnavailable) as caught:
        CosyVoice3Engine(_model_dir(tmp_path / "model")).load()
    assert caught.value.code == "engine_cuda_unavailable"
    assert "CUDA is not available" in caught.value.message


def test_model_dir_defaults_to_setting(settings, tmp_path):
    settings.COSYVOICE_MODEL_DIR = tmp_path
    assert CosyVoice3Engine().model_dir == tmp_path
    assert isinstance(engine_create("cosyvoice3"), CosyVoice3Engine)


@pytest.mark.parametrize(
    ("wording", "prompt"),
    [
        ("用四川话说这句话", "You are a helpful assistant. 请用四川话表达。<|endofprompt|>"),
        ("Cantonese", "You are a helpful assistant. 请用广东话表达。<|endofprompt|>"),
        ("in Shaanxi dialect", "You are a helpful assistant. 请用陕西话表达。<|endofprompt|>"),
        ("sadly", "You are a helpful assistant. 请用伤心的语气说。<|endofprompt|>"),
        ("说得慢一点", "You are a helpful assistant. 请用慢一点的语速说。<|endofprompt|>"),
        ("loudly and happily", "You are a helpful assistant. 请用开心的语气说。请大声说。<|endofprompt|>"),
        ("像播音员一样", "You are a helpful assistant. 像播音员一样。<|endofprompt|>"),
        (
            "用四川话，生气地，like a pirate",
            "You are a helpful assistant. 请用四川话表达。请用生气的语气说。like a pirate。<|endofprompt|>",
        ),
        ("请说这句话", "You are a helpful assistant. 请说这句话<|endofprompt|>"),
    ],
)
def test_instruct_prompt(wording, prompt):
    assert build_instruct_prompt(parse_instruction(wording)) == prompt


def test_zero_shot_and_cross_lingual_prompts():
    assert build_zero_shot_prompt(" 希望你以后能够做的比我还好呦。 ") == (
        "You are a helpful assistant.<|endofprompt|>希望你以后能够做的比我还好呦。"
    )
    assert build_cross_lingual_text("Hello") == "You are a helpful assistant.<|endofprompt|>Hello"


def _request(instruction=None, speed=1.0):
    voice = VoiceSpec(key="tenant-voice-9", language="zh", gender="female", prompt_audio_path="/p.wav")
    return SynthesisRequest(
        text="她的爱好[h][ào]", language="zh", voice=voice, instruction=instruction, seed=5, speed=speed
    )


def test_plan_picks_the_runtime_call():
    instruct = plan_request(_request(parse_instruction("说得慢一点"), speed=1.2), "/p.wav", "你好")
    assert instruct.mode == "instruct2" and instruct.prompt_text.endswith(END_OF_PROMPT)
    assert instruct.speed == 1.2  # the instruction's 0.8 is in the prompt words, not applied twice
    zero_shot = plan_request(_request(speed=1.1), "/p.wav", "你好世界")
    assert (zero_shot.mode, zero_shot.prompt_text, zero_shot.tts_text) == (
        "zero_shot",
        "You are a helpful assistant.<|endofprompt|>你好世界",
        "她的爱好[h][ào]",  # pronunciation tags go to the model untouched
    )
    assert zero_shot.speed == 1.1
    cross = plan_request(_request(), "/p.wav", None)
    assert cross.mode == "cross_lingual" and cross.prompt_text is None
    assert cross.tts_text.startswith("You are a helpful assistant.<|endofprompt|>")


def test_unloaded_engine_refuses_and_describes(tmp_path):
    engine = CosyVoice3Engine(tmp_path)
    with pytest.raises(EngineUnavailable, match="not loaded"):
        engine.synthesize(_request())
    facts = engine.describe()
    assert facts["loaded"] is False and len(facts["dialects"]) == 17
    engine.clear_caches()
    engine.unload()


def _gpu_ready() -> str | None:
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU on this host"
    model_dir = os.environ.get("COSYVOICE_MODEL_DIR")
    if not model_dir:
        return "COSYVOICE_MODEL_DIR is not set"
    try:
        import cosyvoice  # noqa: F401
    except ImportError:
        return "the CosyVoice runtime is not installed"
    return None


@pytest.mark.gpu
@pytest.mark.skipif(_gpu_ready() is not None, reason=_gpu_ready() or "")
def test_gpu_synthesis_replays_identically(tmp_path):
    from tests.inference.speech_samples import speech

    prompt = tmp_path / "prompt.wav"
    prompt.write_bytes(speech(6.0).to_wav_bytes())
    engine = CosyVoice3Engine(os.environ["COSYVOICE_MODEL_DIR"])
    engine.load()
    voice = VoiceSpec(
        key="tenant-voice-gpu",
        language="zh",
        gender="female",
        prompt_audio_path=str(prompt),
        prompt_transcript="今天天气很好，我们一起去公园散步吧。然后去吃午饭，好不好？",
    )
    request = SynthesisRequest(
        text="收到好友从远方寄来的生日礼物。", language="zh", voice=voice, instruction=None, seed=7
    )
    first = engine.synthesize(request)
    assert first.duration_s > 1.0 and first.sample_rate == 24000
    assert engine.synthesize(request).to_wav_bytes() == first.to_wav_bytes()
    instructed = engine.synthesize(
        SynthesisRequest(
            text="收到好友从远方寄来的生日礼物。",
            language="zh",
            voice=voice,
            instruction=parse_instruction("用四川话说"),
            seed=7,
        )
    )
    assert instructed.duration_s > 1.0
    assert engine.describe()["vram_allocated_bytes"] > 0
    engine.unload()


def test_presets_exist_for_the_gpu_engine_too():
    # Preset prompts live beside the model; their absence is a clear per-request error.
    assert PRESET_VOICES_BY_KEY["zh-female"].prompt_audio_path is None
