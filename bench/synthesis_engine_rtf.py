"""CPU-engine real-time factor per language, with raw espeak-ng as the baseline.

RTF = synthesis wall time / audio duration (lower is faster; < 1 is faster than real
time). For each language several sentences are synthesized through the embedded CPU
engine (front end + espeak-ng/Piper + post-processing, as a job would) and, in the same
run, through a bare ``espeak-ng --stdout`` subprocess on the same text. Prints median and
p95 per language. Target (issue 4): CPU engine RTF < 0.05.

    .venv/bin/python bench/synthesis_engine_rtf.py [--repeats 3] [--onnx-threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.engines import PRESET_VOICES_BY_KEY, SynthesisRequest  # noqa: E402
from inference.engines.cpu import CpuEngine, _espeak_pcm  # noqa: E402
from inference.engines.frontend import mandarin_pinyin  # noqa: E402

SENTENCES = {
    "zh": [
        "今天天气很好，我们一起去公园散步吧。",
        "人工智能正在改变我们的生活方式和工作方式。",
        "请在下一个路口向左转，然后直走五百米。",
        "她的爱好[h][ào]是读书、旅行和做饭。",
        "这台服务器的显存使用率已经超过了百分之八十。",
    ],
    "yue": [
        "今日天氣好好，我哋一齊去公園散步啦。",
        "你食咗飯未呀？我哋一陣間去飲茶。",
        "呢間餐廳嘅點心真係好好食。",
        "唔該你講慢啲，我聽唔清楚。",
        "聽日落雨，記得帶遮出門。",
    ],
    "en": [
        "The quick brown fox jumps over the lazy dog.",
        "Voice cloning turns a few seconds of speech into a reusable voice.",
        "Please turn left at the next intersection, then go straight for five hundred meters.",
        "The server's memory usage has exceeded eighty percent.",
        "Thank you for calling; your request has been received.",
    ],
    "ja": [
        "今日は良い天気ですね。一緒に散歩しましょう。",
        "人工知能は私たちの生活を変えています。",
        "次の交差点を左に曲がってください。",
        "このサーバーのメモリ使用率は八十パーセントを超えました。",
        "お電話ありがとうございます。",
    ],
    "ko": [
        "오늘은 날씨가 좋네요. 같이 산책해요.",
        "인공지능이 우리의 생활을 바꾸고 있습니다.",
        "다음 교차로에서 왼쪽으로 도세요.",
        "전화해 주셔서 감사합니다.",
        "내일은 비가 온다고 하니 우산을 챙기세요.",
    ],
}
# (language, preset voice, label). English is measured on both of its synthesizers.
CASES = [
    ("zh", "zh-female", "zh (espeak-ng pinyin)"),
    ("yue", "yue-male", "yue (espeak-ng)"),
    ("en", "en-male", "en (Piper joe-medium)"),
    ("en", "en-female", "en (espeak-ng)"),
    ("ja", "ja-female", "ja (kana + espeak-ng)"),
    ("ko", "ko-male", "ko (espeak-ng)"),
]
_RAW_VOICE = {"zh": "cmn-latn-pinyin", "yue": "yue", "en": "en-us", "ja": "ja", "ko": "ko"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def raw_espeak_rtf(language: str, text: str) -> float:
    """Bare espeak-ng subprocess on the same text (Mandarin as pinyin: espeak reads Han poorly)."""
    spoken = mandarin_pinyin(text.replace("[h][ào]", "")) if language == "zh" else text
    started = time.perf_counter()
    out = subprocess.run(
        ["espeak-ng", "-v", _RAW_VOICE[language], "--stdout", spoken], capture_output=True, check=True
    ).stdout
    elapsed = time.perf_counter() - started
    return elapsed / (len(_espeak_pcm(out)) / 22050)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="passes over each sentence (default 3)")
    parser.add_argument("--onnx-threads", type=int, default=2, help="Piper's onnxruntime threads (default 2)")
    args = parser.parse_args()

    engine = CpuEngine(onnx_threads=args.onnx_threads)
    started = time.perf_counter()
    engine.load()
    load_s = time.perf_counter() - started
    print(f"engine: {engine.name} {engine.version}; load {load_s:.2f} s; Piper onnx threads {args.onnx_threads}")
    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()}")
    print(f"{len(SENTENCES['zh'])} sentences x {args.repeats} passes per row; RTF = wall time / audio seconds\n")
    header = f"{'language / synthesizer':<24} {'audio s':>8} {'RTF med':>8} {'RTF p95':>8} {'espeak med':>11} {'espeak p95':>11}"
    print(header)
    print("-" * len(header))
    all_engine: list[float] = []
    for language, voice_key, label in CASES:
        voice = PRESET_VOICES_BY_KEY[voice_key]
        engine_rtf: list[float] = []
        raw_rtf: list[float] = []
        audio_s = 0.0
        for repeat in range(args.repeats):
            for index, text in enumerate(SENTENCES[language]):
                request = SynthesisRequest(
                    text=text, language=language, voice=voice, instruction=None, seed=1 + index + 10 * repeat
                )
                started = time.perf_counter()
                result = engine.synthesize(request)
                elapsed = time.perf_counter() - started
                engine_rtf.append(elapsed / result.duration_s)
                audio_s += result.duration_s
                raw_rtf.append(raw_espeak_rtf(language, text))
        all_engine.extend(engine_rtf)
        print(
            f"{label:<24} {audio_s / args.repeats:>8.1f} {statistics.median(engine_rtf):>8.4f} "
            f"{percentile(engine_rtf, 95):>8.4f} {statistics.median(raw_rtf):>11.4f} {percentile(raw_rtf, 95):>11.4f}"
        )
    print("-" * len(header))
    print(
        f"{'all CPU-engine requests':<24} {'':>8} {statistics.median(all_engine):>8.4f} {percentile(all_engine, 95):>8.4f}"
    )
    print(f"\nload average after the run: {os.getloadavg()} (other work on the host inflates RTF)")


if __name__ == "__main__":
    main()
