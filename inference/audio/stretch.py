"""Tempo change without a pitch change (WSOLA), for speeds an engine cannot reach natively.

OpenAI's ``speed`` (0.25-4.0) means "the same speech, played this much faster": 0.25 makes
audio four times longer at the same pitch. Engines speak natural rates only within a narrow
range (espeak-ng 80-450 words per minute, Piper's length scale sounds wrong far from 1), so
the rest of the factor is applied here. Deterministic: no randomness, the same input gives
the same output.
"""

from __future__ import annotations

import numpy

FRAME_S = 0.030  # analysis frame: a few pitch periods of speech
SEARCH_S = 0.008  # how far a frame may move to line up with the previous one


def time_stretch(samples: numpy.ndarray, *, sample_rate: int, speed: float) -> numpy.ndarray:
    """``samples`` played ``speed`` times faster (len / speed samples), pitch unchanged."""
    samples = numpy.asarray(samples, dtype=numpy.float32)
    if abs(speed - 1.0) < 1e-3 or samples.size == 0:
        return samples
    frame = max(64, int(FRAME_S * sample_rate)) // 2 * 2
    hop_out = frame // 2
    hop_in = hop_out * speed
    search = max(1, int(SEARCH_S * sample_rate))
    window = numpy.hanning(frame).astype(numpy.float32)
    target_len = int(round(len(samples) / speed))
    frames = max(1, int(numpy.ceil(target_len / hop_out)) + 1)
    padded = numpy.concatenate(
        [numpy.zeros(search, numpy.float32), samples, numpy.zeros(frame + search + int(hop_in) + 1, numpy.float32)]
    )
    out = numpy.zeros(frames * hop_out + frame, dtype=numpy.float32)
    norm = numpy.zeros_like(out)
    previous_tail = None  # what the last placed frame continues with, to line the next one up
    for k in range(frames):
        centre = int(round(k * hop_in)) + search
        start = centre
        if previous_tail is not None:
            lo, hi = centre - search, centre + search
            region = padded[lo : hi + hop_out]
            # Best match of the natural continuation within +-search (normalized cross-correlation).
            corr = numpy.correlate(region, previous_tail, mode="valid")
            energy = numpy.sqrt(numpy.convolve(region * region, numpy.ones(hop_out, numpy.float32), mode="valid"))
            start = lo + int(numpy.argmax(corr / (energy + 1e-9)))
        piece = padded[start : start + frame]
        if len(piece) < frame:
            piece = numpy.pad(piece, (0, frame - len(piece)))
        at = k * hop_out
        out[at : at + frame] += piece * window
        norm[at : at + frame] += window
        previous_tail = padded[start + hop_out : start + hop_out + hop_out]
    out = out / numpy.maximum(norm, 1e-3)
    return out[:target_len].astype(numpy.float32)
