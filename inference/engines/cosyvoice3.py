"""The CosyVoice 3 engine for GPU hosts, through the official runtime (FunAudioLLM/CosyVoice).

It loads a model directory (``cosyvoice3.yaml``, ``llm.pt``, ``flow.pt``, ``hift.pt``,
``campplus.onnx``, ``speech_tokenizer_v3.onnx`` and the ``CosyVoice-BlankEN`` tokenizer
folder the yaml points at) on CUDA in fp16. Prompts follow CosyVoice 3's convention: a
system text ending in ``<|endofprompt|>`` before the prompt transcript (zero-shot) or as
the instruction (instruct2). ``load()`` fails with ``EngineUnavailable`` naming exactly
what is missing; it never lets the runtime fall back to downloading a model.

torch and torchaudio are imported only inside this module's GPU code path; the prompt
builders are pure functions so they can be tested anywhere.
"""

from __future__ import annotations

import gc
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy

from inference.engines.base import (
    EngineUnavailable,
    SynthesisEngine,
    SynthesisFailed,
    SynthesisRequest,
    SynthesisResult,
    VoiceSpec,
    django_setting,
)
from inference.text.instruction import DIALECTS, Instruction
from inference.text.language import LANGUAGES

logger = logging.getLogger(__name__)

ENGINE_VERSION = "cosyvoice3-1.1"  # 1.1: the runtime's streaming mode (stream=True)
REQUIRED_FILES = ("cosyvoice3.yaml", "llm.pt", "flow.pt", "hift.pt", "campplus.onnx", "speech_tokenizer_v3.onnx")
# The yaml's qwen_pretrain_path override points here (tokenizer files of the text LLM).
REQUIRED_DIRS = ("CosyVoice-BlankEN",)
PRESET_PROMPTS_DIR = "voxfleet_presets"

SYSTEM_PROMPT = "You are a helpful assistant."
END_OF_PROMPT = "<|endofprompt|>"

_EMOTION_ZH = {
    "happy": "开心",
    "sad": "伤心",
    "angry": "生气",
    "surprised": "惊讶",
    "fearful": "害怕",
    "calm": "平静",
}
_STYLE_ZH = {
    "loud": "请大声说。",
    "soft": "请小声说。",
    "slow": "请用慢一点的语速说。",
    "fast": "请用快一点的语速说。",
}


# -- prompt building (pure) ------------------------------------------------------------
def build_instruct_prompt(instruction: Instruction) -> str:
    """CosyVoice 3 instruct text: ``You are a helpful assistant. 请用四川话表达。<|endofprompt|>``.

    Recognised parts are rewritten in the wording CosyVoice 3's instruction data uses
    (dialect, then emotion, then styles); unrecognised free text is passed on verbatim,
    so the model can still act on it.
    """
    parts: list[str] = []
    if instruction.dialect:
        parts.append(f"请用{DIALECTS[instruction.dialect][0]}表达。")
    if instruction.emotion:
        parts.append(f"请用{_EMOTION_ZH.get(instruction.emotion, instruction.emotion)}的语气说。")
    for style in instruction.styles:
        parts.append(_STYLE_ZH[style])
    if instruction.free_text:
        free = instruction.free_text.rstrip("。.!！ ")
        parts.append(f"{free}。")
    if not parts:
        parts.append(instruction.raw)
    return f"{SYSTEM_PROMPT} {''.join(parts)}{END_OF_PROMPT}"


def build_zero_shot_prompt(transcript: str) -> str:
    """Zero-shot prompt text: the system text, ``<|endofprompt|>``, then the prompt's transcript."""
    return f"{SYSTEM_PROMPT}{END_OF_PROMPT}{transcript.strip()}"


def build_cross_lingual_text(text: str) -> str:
    """Text for cross-lingual cloning (no transcript): CosyVoice 3 wants the system prefix on it."""
    return f"{SYSTEM_PROMPT}{END_OF_PROMPT}{text}"


@dataclass(frozen=True)
class CosyVoicePlan:
    """Which runtime call a request maps to and with what arguments."""

    mode: str  # "instruct2" | "zero_shot" | "cross_lingual"
    tts_text: str
    prompt_text: str | None
    prompt_wav: str
    speed: float


def plan_request(request: SynthesisRequest, prompt_wav: str, transcript: str | None) -> CosyVoicePlan:
    """Map a request to instruct2 (instruction given), zero-shot (transcript known) or cross-lingual."""
    instruction = request.instruction
    if instruction is not None:
        # Speed words are in the instruct text; passing the factor too would apply it twice.
        return CosyVoicePlan("instruct2", request.text, build_instruct_prompt(instruction), prompt_wav, request.speed)
    if transcript:
        return CosyVoicePlan(
            "zero_shot", request.text, build_zero_shot_prompt(transcript), prompt_wav, request.effective_speed
        )
    return CosyVoicePlan(
        "cross_lingual", build_cross_lingual_text(request.text), None, prompt_wav, request.effective_speed
    )


def model_dir_check(model_dir: Path | str) -> Path:
    """Raise ``EngineUnavailable`` naming every missing piece of the model directory."""
    path = Path(model_dir)
    if not path.is_dir():
        raise EngineUnavailable(
            f"CosyVoice 3 model directory not found: {path}. Set COSYVOICE_MODEL_DIR to the folder holding "
            f"{', '.join(REQUIRED_FILES)}.",
            code="engine_model_missing",
        )
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    missing += [f"{name}/" for name in REQUIRED_DIRS if not (path / name).is_dir()]
    if missing:
        raise EngineUnavailable(
            f"CosyVoice 3 model directory {path} is incomplete; missing: {', '.join(missing)}.",
            code="engine_model_missing",
            missing=missing,
        )
    return path


class CosyVoice3Engine(SynthesisEngine):
    """CosyVoice 3 (0.5B) on one CUDA GPU in fp16."""

    name = "cosyvoice3"
    version = ENGINE_VERSION
    languages = frozenset(LANGUAGES)  # all of the product's languages

    def __init__(self, model_dir: Path | str | None = None, *, fp16: bool = True) -> None:
        if model_dir is None:
            model_dir = _configured_model_dir()
        self.model_dir = Path(model_dir)
        self.fp16 = fp16
        self._model = None
        self._lock = threading.Lock()

    def load(self) -> None:
        model_dir = model_dir_check(self.model_dir)
        try:
            from cosyvoice.cli.cosyvoice import AutoModel
        except Exception as error:  # noqa: BLE001 - any import failure means the runtime is unusable
            raise EngineUnavailable(
                f"The CosyVoice runtime cannot be imported ({type(error).__name__}: {error}). Install "
                "requirements-gpu.txt and put the FunAudioLLM/CosyVoice checkout and its "
                "third_party/Matcha-TTS on PYTHONPATH.",
                code="engine_runtime_missing",
            ) from None
        import torch

        if not torch.cuda.is_available():
            raise EngineUnavailable(
                "CUDA is not available: the CosyVoice 3 engine runs only on a GPU host "
                "(use VOXFLEET_ENGINE=cpu elsewhere).",
                code="engine_cuda_unavailable",
            )
        # Deterministic kernels where torch has them: part of the seed replay contract.
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        self._model = AutoModel(model_dir=str(model_dir), fp16=self.fp16)

    def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        pieces = list(self.synthesize_stream(request))
        return SynthesisResult(
            samples=numpy.concatenate([piece.samples for piece in pieces]).astype(numpy.float32),
            sample_rate=pieces[0].sample_rate,
            info=pieces[-1].info,
        )

    def synthesize_stream(self, request: SynthesisRequest):
        """The runtime's streaming mode (``stream=True``): each chunk as the flow decoder emits it.

        The whole result is these chunks joined, so streamed and whole responses carry the
        same audio (the determinism contract holds per engine version).
        """
        if self._model is None:
            raise EngineUnavailable(
                "The CosyVoice 3 engine is not loaded; call load() first.", code="engine_not_loaded"
            )
        self.check_language(request.language)
        prompt_wav, transcript = self._prompt_for(request.voice)
        plan = plan_request(request, prompt_wav, transcript)
        import torch
        from cosyvoice.utils.common import set_all_random_seed

        produced = False
        with self._lock, torch.inference_mode():
            set_all_random_seed(request.seed)
            if plan.mode == "instruct2":
                outputs = self._model.inference_instruct2(
                    plan.tts_text, plan.prompt_text, plan.prompt_wav, stream=True, speed=plan.speed
                )
            elif plan.mode == "zero_shot":
                outputs = self._model.inference_zero_shot(
                    plan.tts_text, plan.prompt_text, plan.prompt_wav, stream=True, speed=plan.speed
                )
            else:
                outputs = self._model.inference_cross_lingual(
                    plan.tts_text, plan.prompt_wav, stream=True, speed=plan.speed
                )
            for output in outputs:
                samples = output["tts_speech"].float().cpu().numpy().reshape(-1)
                if samples.size:
                    produced = True
                    yield SynthesisResult(
                        samples=samples.astype(numpy.float32),
                        sample_rate=int(self._model.sample_rate),
                        info={"engine": self.name, "version": self.version, "mode": plan.mode},
                    )
        if not produced:
            raise SynthesisFailed("CosyVoice 3 produced no audio for this request.", code="engine_no_audio")

    def _prompt_for(self, voice: VoiceSpec) -> tuple[str, str | None]:
        if voice.prompt_audio_path:
            if not Path(voice.prompt_audio_path).is_file():
                raise SynthesisFailed(
                    f"Prompt audio of voice {voice.key!r} is missing on this node: {voice.prompt_audio_path}",
                    code="prompt_audio_missing",
                )
            return voice.prompt_audio_path, voice.prompt_transcript
        # Preset voices are zero-shot prompts shipped beside the model.
        wav = self.model_dir / PRESET_PROMPTS_DIR / f"{voice.key}.wav"
        if not wav.is_file():
            raise SynthesisFailed(
                f"Preset voice {voice.key!r} has no prompt audio on this node (expected {wav}).",
                code="prompt_audio_missing",
            )
        transcript_file = wav.with_suffix(".txt")
        transcript = transcript_file.read_text(encoding="utf-8").strip() if transcript_file.is_file() else None
        return str(wav), transcript

    def clear_caches(self) -> None:
        gc.collect()
        try:
            import torch
        except ImportError:
            return
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def unload(self) -> None:
        self._model = None
        self.clear_caches()

    def describe(self) -> dict:
        facts = {
            "engine": self.name,
            "version": self.version,
            "model_dir": str(self.model_dir),
            "languages": sorted(self.languages),
            "dialects": sorted(DIALECTS),
            "fp16": self.fp16,
            "loaded": self._model is not None,
            "device": "cuda",
        }
        if self._model is not None:
            import torch

            facts["sample_rate"] = int(self._model.sample_rate)
            facts["device_name"] = torch.cuda.get_device_name(0)
            facts["vram_allocated_bytes"] = int(torch.cuda.memory_allocated(0))
            facts["vram_reserved_bytes"] = int(torch.cuda.memory_reserved(0))
        return facts


def _configured_model_dir() -> Path:
    import os

    return Path(django_setting("COSYVOICE_MODEL_DIR") or os.environ.get("COSYVOICE_MODEL_DIR", "models/CosyVoice3"))
