"""Encoding synthesized audio as it is produced, in the formats OpenAI's speech API offers.

Every format leaves at 24 kHz mono, as OpenAI's do (its ``pcm`` is documented as 24 kHz,
16-bit signed little-endian, no header). Compressed formats go through FFmpeg's encoders
by way of PyAV: mp3 (LAME), opus (libopus in Ogg), aac (FFmpeg's encoder in ADTS) and flac.
The encoder is fed float32 chunks and returns whatever bytes are ready after each one, so a
response can stream while later sentences are still being synthesized. A ``StreamEncoder``
is one stream's state and is not shared between threads.

Determinism: the same samples fed in the same chunks give the same bytes (no encoder here
draws random numbers or writes timestamps of the wall clock).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy

OUTPUT_RATE = 24_000


@dataclass(frozen=True)
class AudioFormat:
    """One ``response_format``: its MIME type and how PyAV makes it (``codec`` None: raw)."""

    name: str
    content_type: str
    container: str | None = None
    codec: str | None = None
    bit_rate: int | None = None


FORMATS: dict[str, AudioFormat] = {
    f.name: f
    for f in (
        AudioFormat("mp3", "audio/mpeg", "mp3", "libmp3lame", 64_000),
        AudioFormat("opus", "audio/ogg", "ogg", "libopus", 32_000),
        AudioFormat("aac", "audio/aac", "adts", "aac", 64_000),
        AudioFormat("flac", "audio/flac", "flac", "flac"),
        AudioFormat("wav", "audio/wav"),
        AudioFormat("pcm", "audio/pcm"),
    )
}
DEFAULT_FORMAT = "mp3"  # what OpenAI returns when response_format is omitted


class _Sink(io.RawIOBase):
    """A write-only, non-seekable file for PyAV's muxer; ``take()`` drains what it wrote."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self._parts = b"".join(self._parts), []
        return out


def pcm16_floats(pcm: bytes | numpy.ndarray) -> numpy.ndarray:
    """16-bit PCM back to floats, the exact inverse of the rounding below (i / 32767)."""
    values = numpy.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes | bytearray) else numpy.asarray(pcm)
    return values.astype(numpy.float32) / numpy.float32(32767.0)


def pcm16(samples: numpy.ndarray) -> bytes:
    """Float samples as 16-bit LE PCM (clipped, rounded): the one conversion of every stored,
    streamed and sent piece (``SynthesisResult.to_pcm_bytes``, a job's audio, a host's frames)."""
    clipped = numpy.clip(numpy.asarray(samples, dtype=numpy.float64), -1.0, 1.0)
    return numpy.rint(clipped * 32767.0).astype("<i2").tobytes()


def wav_header(*, sample_rate: int, data_bytes: int | None) -> bytes:
    """A 44-byte PCM WAV header; ``data_bytes`` None marks a stream of unknown length."""
    data = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        riff,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        1,  # mono
        sample_rate,
        sample_rate * 2,
        2,
        16,
        b"data",
        data,
    )


class StreamEncoder:
    """Encodes one mono stream: ``feed(samples)`` and ``finish()`` each return bytes ready to send."""

    def __init__(self, format_name: str, *, input_rate: int) -> None:
        if format_name not in FORMATS:
            raise ValueError(f"unknown audio format {format_name!r}")
        self.format = FORMATS[format_name]
        self.input_rate = int(input_rate)
        self.bytes_out = 0
        self._header_sent = False
        self._resampler = _Resampler(self.input_rate, OUTPUT_RATE)
        self._container = None
        if self.format.codec is not None:
            import av  # FFmpeg's libraries: loaded only when a compressed format is asked for

            self._sink = _Sink()
            # bitexact: no random Ogg serial numbers or encoder tags, so bytes depend on the audio only.
            self._container = av.open(
                self._sink, mode="w", format=self.format.container, options={"fflags": "+bitexact"}
            )
            self._stream = self._container.add_stream(self.format.codec, rate=OUTPUT_RATE, layout="mono")
            if self.format.bit_rate:
                self._stream.bit_rate = self.format.bit_rate
            self._av = av
            self._pts = 0
            self._fifo = av.AudioFifo()

    @property
    def content_type(self) -> str:
        return self.format.content_type

    def feed(self, samples: numpy.ndarray) -> bytes:
        return self._encode(self._resampler.push(samples), final=False)

    def finish(self) -> bytes:
        return self._encode(self._resampler.flush(), final=True)

    def _encode(self, samples: numpy.ndarray, *, final: bool) -> bytes:
        if self.format.codec is None:
            out = b""
            if self.format.name == "wav" and not self._header_sent:
                out = wav_header(sample_rate=OUTPUT_RATE, data_bytes=None)
            self._header_sent = True
            out += pcm16(samples)
        else:
            out = self._encode_av(samples, final=final)
        self.bytes_out += len(out)
        return out

    def _encode_av(self, samples: numpy.ndarray, *, final: bool) -> bytes:
        av = self._av
        if samples.size:
            frame = av.AudioFrame.from_ndarray(
                numpy.asarray(samples, dtype=numpy.float32).reshape(1, -1), format="flt", layout="mono"
            )
            frame.sample_rate = OUTPUT_RATE
            frame.pts = None
            self._fifo.write(frame)
        # Encoders with a fixed frame size (mp3 1152, aac 1024, opus 960) take whole frames;
        # the last partial one goes out at finish().
        size = self._stream.codec_context.frame_size or 4096
        while self._fifo.samples >= size or (final and self._fifo.samples):
            frame = self._fifo.read(min(size, self._fifo.samples) if final else size)
            frame.pts = self._pts
            self._pts += frame.samples
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        if final:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        return self._sink.take()


def encode_whole(samples: numpy.ndarray, *, sample_rate: int, format_name: str) -> bytes:
    """One finished clip in ``format_name`` (a WAV gets its exact length in the header)."""
    if format_name == "wav":
        pcm = pcm16(_Resampler(sample_rate, OUTPUT_RATE).push(samples, final=True))
        return wav_header(sample_rate=OUTPUT_RATE, data_bytes=len(pcm)) + pcm
    encoder = StreamEncoder(format_name, input_rate=sample_rate)
    return encoder.feed(samples) + encoder.finish()


class _Resampler:
    """Streaming band-limited resampling (windowed sinc, polyphase) that keeps state between chunks.

    Chunk boundaries leave no seam: each output sample is computed from the same input
    neighbourhood whether the input arrived in one piece or many, so streamed and whole
    encodes of the same audio agree sample for sample.
    """

    HALF_TAPS = 16

    def __init__(self, source_rate: int, target_rate: int) -> None:
        from math import gcd

        self.source_rate = source_rate
        self.target_rate = target_rate
        divisor = gcd(source_rate, target_rate)
        self._up = source_rate // divisor  # output n sits at input (n * up) / down
        self._down = target_rate // divisor
        self._buffer = numpy.zeros(0, dtype=numpy.float32)
        self._offset = 0  # input index of self._buffer[0]
        self._next = 0  # index of the next output sample
        cutoff = min(1.0, target_rate / source_rate)
        taps = numpy.arange(-self.HALF_TAPS + 1, self.HALF_TAPS + 1)
        # One kernel per phase (the fractional part of the output's input position).
        fraction = numpy.arange(self._down)[:, None] / self._down
        distance = fraction - taps[None, :]
        window = 0.5 + 0.5 * numpy.cos(numpy.pi * numpy.clip(distance / self.HALF_TAPS, -1.0, 1.0))
        self._kernels = (cutoff * numpy.sinc(cutoff * distance) * window).astype(numpy.float32)
        self._taps = taps
        self._blocks = self._block_matrix()

    # The block form's matrix is ``down`` rows of ``up + 2 * HALF_TAPS - 1`` doubles; rates whose
    # ratio reduces to large numbers (47,999 Hz) take the per-sample gather instead.
    BLOCK_MATRIX_MAX = 1 << 18

    def _block_matrix(self) -> numpy.ndarray | None:
        """Outputs ``q * down + r`` (r < down) read inputs ``q * up + base_r - HALF_TAPS + 1 ...``: the
        same window of ``up + 2 * HALF_TAPS - 1`` inputs, shifted by ``up``, for every block ``q``. Row
        ``r`` holds output r's kernel at its base, so one block of outputs is one matrix product."""
        width = self._up + 2 * self.HALF_TAPS - 1
        if self._down * width > self.BLOCK_MATRIX_MAX:
            return None
        matrix = numpy.zeros((self._down, width), dtype=numpy.float64)
        span = 2 * self.HALF_TAPS
        for r in range(self._down):
            base, phase = divmod(r * self._up, self._down)
            matrix[r, base : base + span] = self._kernels[phase]
        return matrix

    def push(self, samples: numpy.ndarray, *, final: bool = False) -> numpy.ndarray:
        samples = numpy.asarray(samples, dtype=numpy.float32).ravel()
        if self.source_rate == self.target_rate:
            return samples
        self._buffer = numpy.concatenate([self._buffer, samples])
        return self._drain(final=final)

    def flush(self) -> numpy.ndarray:
        if self.source_rate == self.target_rate:
            return numpy.zeros(0, dtype=numpy.float32)
        return self._drain(final=True)

    def _drain(self, *, final: bool) -> numpy.ndarray:
        up, down = self._up, self._down
        end_input = self._offset + len(self._buffer)  # input samples seen so far
        if final:
            stop = -(-end_input * down // up)  # ceil: every output inside the input's span
        else:
            # Output n needs inputs up to floor(n * up / down) + HALF_TAPS.
            stop = max(0, ((end_input - self.HALF_TAPS) * down) // up)
        count = stop - self._next
        if count <= 0:
            return numpy.zeros(0, dtype=numpy.float32)
        if self._blocks is not None:
            out = self._outputs_by_block(self._next, stop)
        else:
            out = self._outputs_by_gather(self._next, count)
        self._next = stop
        # Keep only the inputs later outputs still need.
        keep_from = (self._next * up) // down - self.HALF_TAPS
        drop = max(0, min(len(self._buffer), keep_from - self._offset))
        self._buffer = self._buffer[drop:]
        self._offset += drop
        return out.astype(numpy.float32)

    def _outputs_by_block(self, first: int, stop: int) -> numpy.ndarray:
        """Outputs ``first`` to ``stop`` as whole blocks of ``down`` (one matrix product, in float64,
        each sum in the same order however the stream was cut), the extra ones cut off."""
        up, down = self._up, self._down
        width = self._blocks.shape[1]
        q0, q1 = first // down, -(-stop // down)
        low = q0 * up - self.HALF_TAPS + 1  # input index of the first block's window
        high = (q1 - 1) * up - self.HALF_TAPS + 1 + width
        window = numpy.zeros(high - low, dtype=numpy.float64)
        # Inputs outside the buffer are the silence before the stream, or after it when final;
        # any other outside input feeds only outputs that are cut off below.
        start, end = max(low, self._offset), min(high, self._offset + len(self._buffer))
        if end > start:
            window[start - low : end - low] = self._buffer[start - self._offset : end - self._offset]
        blocks = numpy.lib.stride_tricks.sliding_window_view(window, width)[::up]
        # einsum's own loops, not a BLAS product: OpenBLAS's worker threads spin for a while after
        # each call, and a console encoding every stream would keep a core busy doing nothing.
        out = numpy.einsum("qw,rw->qr", blocks, self._blocks).ravel()
        return out[first - q0 * down : stop - q0 * down]

    def _outputs_by_gather(self, first: int, count: int) -> numpy.ndarray:
        """Outputs ``first`` to ``first + count``, each from its own gathered inputs (any rate ratio)."""
        up, down = self._up, self._down
        numerators = (first + numpy.arange(count, dtype=numpy.int64)) * up
        base, phase = numpy.divmod(numerators, down)
        local = base[:, None] + self._taps[None, :] - self._offset
        padded = numpy.concatenate(
            [numpy.zeros(self.HALF_TAPS, numpy.float32), self._buffer, numpy.zeros(self.HALF_TAPS + 1, numpy.float32)]
        )
        values = padded[numpy.clip(local + self.HALF_TAPS, 0, len(padded) - 1)]
        return numpy.einsum("ij,ij->i", values, self._kernels[phase])
