"""Voice profile of a prompt: speaker embedding, pitch and speaking-rate statistics (torch, CPU).

Everything here is deterministic signal processing with no downloaded weights:
- embedding: mean and standard deviation of 64 log-mel bands over speech frames
  (per-utterance normalised), projected to ``EMBEDDING_DIM`` by a fixed random matrix
  (seeded generator) and L2-normalised, so cosine similarity compares voices;
- pitch: YIN (cumulative mean normalised difference) on 40 ms frames, 60–500 Hz;
- speaking rate: syllable nuclei, counted as prominent peaks of the smoothed energy
  envelope in voiced frames, per second of speech.
The CPU engine follows ``f0_median_hz`` and ``speaking_rate_sps``; the CosyVoice engine
works from the prompt audio itself and keeps the profile for display and search.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy

from inference.audio.decode import resample

PROFILE_VERSION = 1
ANALYSIS_RATE = 16000
EMBEDDING_DIM = 192
N_MELS = 64
N_FFT = 512
WIN = 400  # 25 ms
HOP = 160  # 10 ms
F0_MIN = 60.0
F0_MAX = 500.0
_YIN_THRESHOLD = 0.15
_YIN_ACCEPT = 0.35


@dataclass
class VoiceProfile:
    """JSON-ready description of a voice; stored on the Voice model via ``to_dict()``."""

    embedding: list[float]
    f0_median_hz: float | None
    f0_p10_hz: float | None
    f0_p90_hz: float | None
    f0_range_semitones: float | None
    speaking_rate_sps: float | None
    voiced_ratio: float
    speech_duration_s: float
    version: int = PROFILE_VERSION
    extra: dict = field(default_factory=dict)

    @property
    def gender_hint(self) -> str | None:
        """ "female" above 165 Hz median F0, "male" below; a hint for picking a CPU voice."""
        if self.f0_median_hz is None:
            return None
        return "female" if self.f0_median_hz >= 165.0 else "male"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["gender_hint"] = self.gender_hint
        return data

    @classmethod
    def from_dict(cls, data: dict) -> VoiceProfile:
        if int(data.get("version", 0)) != PROFILE_VERSION:
            raise ValueError(f"Unsupported voice profile version {data.get('version')!r}; expected {PROFILE_VERSION}")
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in data.items() if key in names})

    def similarity(self, other: VoiceProfile) -> float:
        """Cosine similarity of the embeddings (1.0 = same spectral signature)."""
        a = numpy.asarray(self.embedding, dtype=numpy.float64)
        b = numpy.asarray(other.embedding, dtype=numpy.float64)
        return float(a @ b / max(1e-12, numpy.linalg.norm(a) * numpy.linalg.norm(b)))


def _torch():
    import torch

    return torch


_MEL_CACHE: dict[str, object] = {}


def _mel_filterbank():
    """HTK-style triangular mel filters, ``N_MELS`` x (``N_FFT``/2+1), 20 Hz–7.6 kHz."""
    if "mel" in _MEL_CACHE:
        return _MEL_CACHE["mel"]
    torch = _torch()

    def hz_to_mel(hz):
        return 2595.0 * math.log10(1.0 + hz / 700.0)

    mel_points = torch.linspace(hz_to_mel(20.0), hz_to_mel(7600.0), N_MELS + 2, dtype=torch.float64)
    hz_points = 700.0 * (10 ** (mel_points / 2595.0) - 1.0)
    bins = torch.linspace(0, ANALYSIS_RATE / 2, N_FFT // 2 + 1, dtype=torch.float64)
    lower, centre, upper = hz_points[:-2, None], hz_points[1:-1, None], hz_points[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    bank = torch.clamp(torch.minimum(rising, falling), min=0.0)
    _MEL_CACHE["mel"] = bank
    return bank


def _projection():
    """Fixed projection from 2*N_MELS statistics to the embedding (seeded, never trained)."""
    if "projection" in _MEL_CACHE:
        return _MEL_CACHE["projection"]
    torch = _torch()
    generator = torch.Generator().manual_seed(20240601)
    matrix = torch.randn(2 * N_MELS, EMBEDDING_DIM, generator=generator, dtype=torch.float64)
    matrix = matrix / math.sqrt(2 * N_MELS)
    _MEL_CACHE["projection"] = matrix
    return matrix


def _frames(signal, size: int, hop: int):
    torch = _torch()
    if signal.shape[0] < size:
        signal = torch.nn.functional.pad(signal, (0, size - signal.shape[0]))
    return signal.unfold(0, size, hop)


def log_mel(samples_16k: numpy.ndarray):
    """Log-mel spectrogram, frames x ``N_MELS`` (torch float64)."""
    torch = _torch()
    signal = torch.as_tensor(samples_16k, dtype=torch.float64)
    window = torch.hann_window(WIN, dtype=torch.float64)
    frames = _frames(signal, WIN, HOP) * window
    power = torch.fft.rfft(frames, n=N_FFT).abs() ** 2
    return torch.log(power @ _mel_filterbank().T + 1e-8)


def yin_pitch(samples: numpy.ndarray, sample_rate: int, *, hop_s: float = 0.01, frame_s: float = 0.04):
    """Per-frame F0 in Hz (``nan`` where unvoiced) by YIN, vectorised with torch FFTs."""
    torch = _torch()
    signal = torch.as_tensor(samples, dtype=torch.float64)
    window = int(frame_s * sample_rate)
    tau_min = max(2, int(sample_rate / F0_MAX))
    tau_max = int(sample_rate / F0_MIN)
    hop = max(1, int(hop_s * sample_rate))
    frames = _frames(signal, window + tau_max + 1, hop)
    frames = frames - frames.mean(dim=1, keepdim=True)
    head = frames[:, :window]
    size = 1 << (frames.shape[1] + window).bit_length()
    # r(tau) = sum_j x_j x_{j+tau} over the integration window, for every lag at once.
    correlation = torch.fft.irfft(torch.fft.rfft(frames, n=size) * torch.conj(torch.fft.rfft(head, n=size)), n=size)[
        :, : tau_max + 1
    ]
    energy = torch.cumsum(frames**2, dim=1)
    energy = torch.nn.functional.pad(energy, (1, 0))
    lags = torch.arange(tau_max + 1)
    shifted_energy = energy[:, lags + window] - energy[:, lags]
    difference = energy[:, window : window + 1] + shifted_energy - 2.0 * correlation
    difference[:, 0] = 0.0
    cumulative = torch.cumsum(difference[:, 1:], dim=1)
    cmnd = torch.ones_like(difference)
    cmnd[:, 1:] = difference[:, 1:] * lags[1:] / torch.clamp(cumulative, min=1e-12)

    f0 = numpy.full(frames.shape[0], numpy.nan)
    cmnd_np = cmnd.numpy()
    loudness = head.pow(2).mean(dim=1).sqrt().numpy()
    floor = max(1e-4, float(numpy.percentile(loudness, 95)) * 0.05) if loudness.size else 1e-4
    for index in range(frames.shape[0]):
        if loudness[index] < floor:
            continue
        curve = cmnd_np[index]
        below = numpy.flatnonzero(curve[tau_min : tau_max + 1] < _YIN_THRESHOLD)
        if below.size:
            tau = tau_min + int(below[0])
            while tau + 1 <= tau_max and curve[tau + 1] < curve[tau]:
                tau += 1
        else:
            tau = tau_min + int(numpy.argmin(curve[tau_min : tau_max + 1]))
            if curve[tau] > _YIN_ACCEPT:
                continue
        # Parabolic interpolation around the dip for sub-sample lag precision.
        if tau_min < tau < tau_max:
            left, centre, right = curve[tau - 1], curve[tau], curve[tau + 1]
            denominator = left - 2 * centre + right
            shift = 0.5 * (left - right) / denominator if abs(denominator) > 1e-12 else 0.0
        else:
            shift = 0.0
        f0[index] = sample_rate / (tau + shift)
    return f0


def _speech_mask(frame_count: int, segments, hop_s: float) -> numpy.ndarray:
    if not segments:
        return numpy.ones(frame_count, dtype=bool)
    times = numpy.arange(frame_count) * hop_s
    mask = numpy.zeros(frame_count, dtype=bool)
    for segment in segments:
        mask |= (times >= segment.start_s) & (times < segment.end_s)
    return mask


def _syllable_rate(samples_16k: numpy.ndarray, f0: numpy.ndarray, speech_mask: numpy.ndarray, speech_s: float):
    """Energy peaks (>= 3 dB prominence, >= 80 ms apart) in voiced speech, per second."""
    if speech_s <= 0:
        return None
    torch = _torch()
    frames = _frames(torch.as_tensor(samples_16k, dtype=torch.float64), WIN, HOP)
    level = 10 * numpy.log10(frames.pow(2).mean(dim=1).numpy() + 1e-10)
    kernel = numpy.hanning(7)
    smooth = numpy.convolve(level, kernel / kernel.sum(), mode="same")
    count = min(len(smooth), len(f0), len(speech_mask))
    voiced = ~numpy.isnan(f0[:count]) & speech_mask[:count]
    peaks = 0
    last = -100
    for i in range(1, count - 1):
        if not voiced[i] or smooth[i] < smooth[i - 1] or smooth[i] < smooth[i + 1]:
            continue
        lo, hi = max(0, i - 15), min(count, i + 16)
        prominence = smooth[i] - max(smooth[lo:i].min(), smooth[i + 1 : hi].min())
        if prominence >= 3.0 and i - last >= 8:
            peaks += 1
            last = i
    return round(peaks / speech_s, 3)


def extract_voice_profile(samples: numpy.ndarray, sample_rate: int, *, segments=None) -> VoiceProfile:
    """Profile a voice from mono ``samples`` at ``sample_rate``.

    ``segments`` (from the VAD, as ``PromptAudio.segments``) limits the analysis to speech;
    without it the whole signal counts as speech.
    """
    torch = _torch()
    samples_16k = resample(numpy.asarray(samples, dtype=numpy.float32), int(sample_rate), ANALYSIS_RATE)
    hop_s = HOP / ANALYSIS_RATE

    features = log_mel(samples_16k)
    mask = torch.as_tensor(_speech_mask(features.shape[0], segments, hop_s))
    speech = features[mask] if int(mask.sum()) >= 10 else features
    mean = speech.mean(dim=0)
    std = speech.std(dim=0) if speech.shape[0] > 1 else torch.zeros_like(mean)
    # Remove the overall level (gain of the recording) so loudness does not move the voice.
    statistics = torch.cat([mean - mean.mean(), std - std.mean()])
    vector = statistics @ _projection()
    vector = vector / torch.clamp(vector.norm(), min=1e-12)
    embedding = [round(float(v), 6) for v in vector]

    f0 = yin_pitch(samples_16k, ANALYSIS_RATE, hop_s=hop_s)
    f0_mask = _speech_mask(len(f0), segments, hop_s)
    voiced = f0[f0_mask & ~numpy.isnan(f0)]
    speech_frames = int(f0_mask.sum())
    speech_s = (
        sum(segment.end_s - segment.start_s for segment in segments) if segments else len(samples_16k) / ANALYSIS_RATE
    )
    if voiced.size >= 5:
        f0_median = float(numpy.median(voiced))
        f0_p10, f0_p90 = (float(v) for v in numpy.percentile(voiced, [10, 90]))
        semitones = 12 * math.log2(f0_p90 / f0_p10) if f0_p10 > 0 else 0.0
        pitch = (round(f0_median, 2), round(f0_p10, 2), round(f0_p90, 2), round(semitones, 2))
    else:
        pitch = (None, None, None, None)
    return VoiceProfile(
        embedding=embedding,
        f0_median_hz=pitch[0],
        f0_p10_hz=pitch[1],
        f0_p90_hz=pitch[2],
        f0_range_semitones=pitch[3],
        speaking_rate_sps=_syllable_rate(samples_16k, f0, f0_mask, speech_s),
        voiced_ratio=round(voiced.size / max(1, speech_frames), 3),
        speech_duration_s=round(float(speech_s), 3),
    )
