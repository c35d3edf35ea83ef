"""Streaming speech: time to first audio byte and total time, streamed vs whole, plus encoding cost.

Runs the real shape on PostgreSQL + Redis (uvicorn for the API, a Celery worker for the
node's queue, the CPU engine) and sends a three-sentence text through
API -> queue -> node -> console -> client:

- streamed: ``stream_format: "audio"`` (OpenAI's default), chunked, first sentence first;
- sse: ``stream_format: "sse"`` (``speech.audio.delta`` events);
- whole (the baseline): ``"stream": false``, the old path (wait for the job, one body).

It prints p50/p95 of time to first byte and of total time for each, and the engine-free
encoding cost of each response_format (ms per second of audio, bytes per second).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/vf_bench_jobs REDIS_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python bench/synthesis_stream.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TEXT = "今天的天气非常好，我们一起去公园散步吧。公园里的花都开了，红的黄的紫的，非常漂亮。走累了我们就在湖边坐一会儿，看看风景。"
FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def one(client, key: str, *, mode: str, seed: int, response_format: str = "mp3") -> tuple[float, float, int]:
    body = {
        "model": "cosyvoice-3",
        "input": TEXT,
        "voice": "zh-female",
        "seed": seed,
        "response_format": response_format,
    }
    if mode == "sse":
        body["stream_format"] = "sse"
    elif mode == "whole":
        body["stream"] = False
    started = time.perf_counter()
    first = None
    size = 0
    with client.stream("POST", "/v1/audio/speech", json=body, headers={"Authorization": f"Bearer {key}"}) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.read()[:200]!r}")
        for chunk in response.iter_raw():
            if chunk and first is None:
                first = time.perf_counter()
            size += len(chunk)
    done = time.perf_counter()
    return (first - started) * 1000, (done - started) * 1000, size


def run_api(server, *, requests: int) -> dict:
    import httpx

    key = server.key("enterprise")
    results: dict[str, dict[str, list[float]]] = {}
    with httpx.Client(base_url=server.url, timeout=120) as client:
        for mode in ("whole", "streamed", "sse"):  # warm-up: engine, connections, plans
            one(client, key, mode=mode, seed=1)
        for i in range(requests):
            # Interleaved so a load spike from elsewhere on the machine hits all three alike.
            for mode in ("whole", "streamed", "sse"):
                ttfb, total, _ = one(client, key, mode=mode, seed=1000 + i)
                slot = results.setdefault(mode, {"ttfb": [], "total": []})
                slot["ttfb"].append(ttfb)
                slot["total"].append(total)
    return results


def encoding_cost() -> list[tuple[str, float, float, float]]:
    from inference.audio.encode import StreamEncoder
    from inference.engines import PRESET_VOICES_BY_KEY, SynthesisRequest
    from inference.engines.cpu import CpuEngine

    engine = CpuEngine()
    engine.load()
    voice = PRESET_VOICES_BY_KEY["zh-female"]
    pieces = list(
        engine.synthesize_stream(SynthesisRequest(text=TEXT, language="zh", voice=voice, instruction=None, seed=3))
    )
    seconds = sum(p.duration_s for p in pieces)
    rows = []
    for name in FORMATS:
        times = []
        size = 0
        for _ in range(5):
            started = time.perf_counter()
            encoder = StreamEncoder(name, input_rate=pieces[0].sample_rate)
            size = sum(len(encoder.feed(p.samples)) for p in pieces) + len(encoder.finish())
            times.append((time.perf_counter() - started) * 1000)
        rows.append((name, statistics.median(times) / seconds, size / seconds / 1000, seconds))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30, help="requests per mode")
    args = parser.parse_args()
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/vf_bench_jobs")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/9")
    if not os.environ["DATABASE_URL"].startswith("postgres"):
        print("this benchmark measures the real shape: set DATABASE_URL to PostgreSQL and REDIS_URL", file=sys.stderr)
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    import django

    django.setup()
    from tests.support.live_server import live_server_start

    print(f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    print(f"text: {len(TEXT)} characters, 3 sentences, voice zh-female, mp3 unless noted\n")
    print("encoding cost per format (CPU engine output, 24 kHz out, median of 5):")
    for name, ms_per_s, kb_per_s, seconds in encoding_cost():
        print(f"  {name:<5} {ms_per_s:6.2f} ms per second of audio   {kb_per_s:6.1f} kB/s   ({seconds:.1f} s clip)")
    with tempfile.TemporaryDirectory(prefix="vf-bench-stream-") as tmp:
        server = live_server_start(Path(tmp))
        try:
            results = run_api(server, requests=args.requests)
        finally:
            server.stop()
    print(f"\nAPI -> queue -> node -> console -> client, {args.requests} requests per mode (ms):")
    print(f"  {'mode':<22} {'first byte p50':>15} {'p95':>8} {'total p50':>10} {'p95':>8}")
    labels = {"whole": "whole (baseline)", "streamed": "streamed (audio)", "sse": "streamed (sse)"}
    for mode, slot in results.items():
        print(
            f"  {labels[mode]:<22} {pct(slot['ttfb'], 50):15.1f} {pct(slot['ttfb'], 95):8.1f} "
            f"{pct(slot['total'], 50):10.1f} {pct(slot['total'], 95):8.1f}"
        )
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
