"""Streaming encoders: every OpenAI response_format decodes, at 24 kHz, the same bytes in chunks or whole."""

from __future__ import annotations

import io
import wave

import av
import numpy
import pytest

from inference.audio.encode import DEFAULT_FORMAT, FORMATS, OUTPUT_RATE, StreamEncoder, encode_whole

RATE = 22050


def tone(seconds: float, hz: float = 440.0) -> numpy.ndarray:
    t = numpy.arange(int(seconds * RATE)) / RATE
    return (0.5 * numpy.sin(2 * numpy.pi * hz * t)).astype(numpy.float32)


def decoded(data: bytes) -> tuple[numpy.ndarray, int]:
    with av.open(io.BytesIO(data)) as container:
        frames = [frame for frame in container.decode(audio=0)]
    samples = numpy.concatenate([frame.to_ndarray().reshape(-1) for frame in frames])
    return samples, frames[0].sample_rate


def test_default_is_mp3_as_openai():
    assert DEFAULT_FORMAT == "mp3" and FORMATS["mp3"].content_type == "audio/mpeg"


@pytest.mark.parametrize("name", ["mp3", "opus", "aac", "flac", "wav"])
def test_each_format_decodes_to_the_same_length_at_24_khz(name):
    data = encode_whole(tone(2.0), sample_rate=RATE, format_name=name)
    samples, rate = decoded(data)
    # Opus always decodes at 48 kHz; its header records the 24 kHz input rate.
    assert rate == (48_000 if name == "opus" else OUTPUT_RATE)
    # Codec priming and frame padding add at most a few dozen milliseconds.
    assert len(samples) / rate == pytest.approx(2.0, abs=0.08)
    spectrum = numpy.abs(numpy.fft.rfft(samples[:rate]))  # one second: bin k is k Hz
    assert numpy.argmax(spectrum) == pytest.approx(440, abs=3)  # still a 440 Hz tone


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_chunking_does_not_change_the_bytes(name):
    audio = tone(1.5, 300.0)

    def streamed(parts: int) -> bytes:
        encoder = StreamEncoder(name, input_rate=RATE)
        out = [encoder.feed(chunk) for chunk in numpy.array_split(audio, parts)]
        return b"".join(out) + encoder.finish()

    assert streamed(4) == streamed(4)
    if name != "wav":  # a whole WAV states its length; a streamed one cannot
        assert streamed(4) == streamed(9) == encode_whole(audio, sample_rate=RATE, format_name=name)


def test_pcm_is_24_khz_16_bit_little_endian_without_header():
    audio = tone(1.0)
    pcm = encode_whole(audio, sample_rate=RATE, format_name="pcm")
    assert len(pcm) == 2 * OUTPUT_RATE
    values = numpy.frombuffer(pcm, dtype="<i2").astype(numpy.float32) / 32767
    assert numpy.max(numpy.abs(values)) == pytest.approx(0.5, abs=0.01)


def test_streamed_wav_starts_with_a_header_of_unknown_length_and_whole_wav_is_exact():
    encoder = StreamEncoder("wav", input_rate=RATE)
    first = encoder.feed(tone(0.5))
    assert first[:4] == b"RIFF" and first[4:8] == b"\xff\xff\xff\xff"
    whole = encode_whole(tone(0.5), sample_rate=RATE, format_name="wav")
    with wave.open(io.BytesIO(whole)) as wav:
        assert wav.getframerate() == OUTPUT_RATE and wav.getnframes() == OUTPUT_RATE // 2


def test_first_bytes_leave_before_the_end():
    encoder = StreamEncoder("mp3", input_rate=RATE)
    assert encoder.feed(tone(0.5))  # half a second in: mp3 frames are already out
    assert encoder.finish()


@pytest.mark.parametrize("rate", [8_000, 16_000, 22_050, 44_100, 48_000, 47_999])
def test_the_block_resampler_matches_the_per_sample_one_and_does_not_depend_on_the_cuts(rate):
    from inference.audio.encode import _Resampler

    rng = numpy.random.default_rng(rate)
    audio = rng.uniform(-0.9, 0.9, rate).astype(numpy.float32)  # one second of noise: every band

    def resampled(parts: int, *, blocks: bool) -> numpy.ndarray:
        resampler = _Resampler(rate, OUTPUT_RATE)
        if not blocks:
            resampler._blocks = None  # the per-sample form (any ratio; the only one for 47,999 Hz)
        out = [resampler.push(chunk) for chunk in numpy.array_split(audio, parts)]
        return numpy.concatenate([*out, resampler.flush()])

    reference = resampled(1, blocks=False)
    whole = resampled(1, blocks=True)
    assert len(whole) == len(reference) == pytest.approx(OUTPUT_RATE, abs=2)
    # The same kernels: only the rounding of float32 sums differs (the block form sums in float64).
    assert numpy.max(numpy.abs(whole - reference)) < 1e-5
    for parts in (3, 17, 250):
        assert numpy.array_equal(resampled(parts, blocks=True), whole)
