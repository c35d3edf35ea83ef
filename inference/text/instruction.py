"""Natural-language instructions ("用四川话说这句话", "sadly, and slower") parsed into a structure.

The structure tells the engine what to do and tells billing's plan gate which paid
features a request uses (``required_features``), so a Free tenant can be refused with a
403 that names the feature.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from inference.text.normalize import normalize_text

# The 17 dialects of CosyVoice 3's instruction list (PRODUCT.md). Key -> (Chinese name as
# the model's instruction uses it, English name, Chinese spellings, English spellings).
DIALECTS: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {
    "cantonese": ("广东话", "Cantonese", ("广东话", "广东", "粤语", "广府话", "白话"), ("cantonese", "guangdong")),
    "dongbei": (
        "东北话",
        "Northeastern",
        ("东北话", "东北"),
        ("dongbei", "northeastern", "north-eastern", "northeast"),
    ),
    "gansu": ("甘肃话", "Gansu", ("甘肃话", "甘肃"), ("gansu",)),
    "guizhou": ("贵州话", "Guizhou", ("贵州话", "贵州"), ("guizhou",)),
    "henan": ("河南话", "Henan", ("河南话", "河南"), ("henan", "henanese")),
    "hubei": ("湖北话", "Hubei", ("湖北话", "湖北"), ("hubei",)),
    "hunan": ("湖南话", "Hunan", ("湖南话", "湖南"), ("hunan", "hunanese")),
    "jiangxi": ("江西话", "Jiangxi", ("江西话", "江西"), ("jiangxi",)),
    "minnan": (
        "闽南话",
        "Minnan",
        ("闽南话", "闽南语", "闽南", "台语"),
        ("minnan", "min nan", "southern min", "hokkien"),
    ),
    "ningxia": ("宁夏话", "Ningxia", ("宁夏话", "宁夏"), ("ningxia",)),
    "shanxi": ("山西话", "Shanxi", ("山西话", "山西"), ("shanxi",)),
    "shaanxi": ("陕西话", "Shaanxi", ("陕西话", "陕西"), ("shaanxi",)),
    "shandong": ("山东话", "Shandong", ("山东话", "山东"), ("shandong",)),
    "shanghai": ("上海话", "Shanghainese", ("上海话", "上海"), ("shanghainese", "shanghai")),
    "sichuan": ("四川话", "Sichuanese", ("四川话", "四川"), ("sichuanese", "sichuan")),
    "tianjin": ("天津话", "Tianjin", ("天津话", "天津"), ("tianjin",)),
    "yunnan": ("云南话", "Yunnan", ("云南话", "云南"), ("yunnan",)),
}

# Dialects that imply a different output language than Mandarin.
DIALECT_LANGUAGE = {"cantonese": "yue"}

EMOTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "happy": (
        ("开心", "高兴", "快乐", "愉快", "欢快", "兴奋"),
        ("happy", "happily", "cheerful", "cheerfully", "joyful", "joyfully", "excited", "excitedly"),
    ),
    "sad": (
        ("伤心", "难过", "悲伤", "悲痛", "忧伤", "沮丧"),
        ("sad", "sadly", "sorrowful", "sorrowfully", "upset", "melancholy"),
    ),
    "angry": (("生气", "愤怒", "恼火", "气愤"), ("angry", "angrily", "furious", "furiously", "mad")),
    "surprised": (("惊讶", "吃惊", "震惊"), ("surprised", "surprisedly", "astonished", "amazed")),
    "fearful": (("害怕", "恐惧", "惊恐"), ("fearful", "fearfully", "scared", "afraid", "frightened")),
    "calm": (("平静", "冷静", "淡定"), ("calm", "calmly", "peaceful", "peacefully")),
}

# Styles beyond the speed pair. Speed words are handled by _SPEED_RULES below.
VOLUME_STYLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "loud": (
        ("大声", "大点声", "响亮", "洪亮", "大嗓门", "喊"),
        ("loud", "loudly", "louder", "shout", "shouting", "yell"),
    ),
    "soft": (
        ("小声", "轻声", "轻柔", "温柔", "悄悄", "低声", "耳语"),
        ("soft", "softly", "softer", "quiet", "quietly", "whisper", "whispering", "gently", "gentle"),
    ),
}

# (style, factor, pattern). First match per direction wins; "very" variants come first.
_SPEED_RULES: tuple[tuple[str, float, re.Pattern[str]], ...] = (
    ("slow", 0.65, re.compile(r"非常慢|特别慢|很慢很慢|极慢|very slow(ly)?|much slower|extremely slow(ly)?", re.I)),
    (
        "slow",
        0.8,
        re.compile(
            r"慢一点|慢一些|慢点|慢些|慢慢|放慢|缓慢|语速慢|说慢|(说|讲|读|念)得?(很|更|再)?慢|\bslow(ly|er)?\b", re.I
        ),
    ),
    ("fast", 1.5, re.compile(r"非常快|特别快|很快很快|极快|very (fast|quickly)|much faster|extremely fast", re.I)),
    (
        "fast",
        1.25,
        re.compile(
            r"快一点|快一些|快点|快些|加快|语速快|飞快|说快|(说|讲|读|念)得?(很|更|再)?快(?!乐)|\b(fast|faster|quick|quickly|rapidly)\b",
            re.I,
        ),
    ),
)
_SPEED_NUMBER = re.compile(r"(\d+(?:\.\d+)?)\s*(?:x|×|倍速?)", re.I)
SPEED_MIN = 0.5
SPEED_MAX = 2.0

# Words that only carry the request itself ("please say this sentence in ...") and so are
# not free-text style. Whatever remains after these and the recognised phrases is kept.
_FILLER = re.compile(
    r"请|用|以|说|讲|读|念|一下|这句话|这段话|这句|得|地|的|点|一点|一些|语气|语调|语速|口音|方言|话|声音|地说|来|"
    r"\b(please|say|speak|read|it|this|that|the|a|an|in|with|and|voice|tone|accent|dialect|sentence|"
    r"speech|words|like|bit|little|more|much|very|manner|way|style|of|to|be|sound|talk)\b",
    re.I,
)
# Boundaries between separate requests inside one instruction.
_CLAUSE = re.compile(r"[|,，、;；.。!！?？]+|\b(?:and|but|then)\b|并且|而且|然后|同时|和", re.I)


def _free_text(raw: str, spans: list[tuple[int, int]]) -> str:
    """Clauses of ``raw`` that carry wording beyond the recognised phrases and filler.

    A clause is kept verbatim ("like a pirate", "像播音员一样"), so the meaning survives;
    clauses made only of filler ("用…说这句话", "please say it") are dropped.
    """
    marked = list(raw)
    for start, end in spans:
        for index in range(start, end):
            marked[index] = "|"
    kept = []
    for clause in _CLAUSE.split("".join(marked)):
        clause = clause.strip(" |")
        if clause and re.search(r"\w", _FILLER.sub("", clause)):
            kept.append(clause)
    return ", ".join(kept)


FEATURES = ("dialect", "emotion", "style")


@dataclass(frozen=True)
class Instruction:
    """What an instruction asks for.

    ``dialect`` is a key of ``DIALECTS`` (``sichuan``, ``cantonese``…); ``language`` is
    the output language the dialect implies (``yue`` for Cantonese), else ``None``;
    ``emotion`` a key of ``EMOTIONS``; ``styles`` a sorted tuple from ``loud``, ``soft``,
    ``slow``, ``fast``; ``speed`` a rate factor (1.0 = unchanged); ``free_text`` the
    meaningful wording not recognised above (kept: the CosyVoice engine passes the whole
    ``raw`` instruction to the model anyway). ``raw`` is the normalized instruction.
    """

    raw: str
    dialect: str | None = None
    language: str | None = None
    emotion: str | None = None
    styles: tuple[str, ...] = ()
    speed: float = 1.0
    free_text: str = ""
    matched: tuple[str, ...] = field(default=(), compare=False)

    @property
    def required_features(self) -> frozenset[str]:
        """Plan features this instruction uses: a subset of dialect, emotion, style.

        Free text the parser did not understand counts as a style instruction: the
        model will still act on it, so it must be paid for like one.
        """
        features = set()
        if self.dialect:
            features.add("dialect")
        if self.emotion:
            features.add("emotion")
        if self.styles or self.free_text:
            features.add("style")
        return frozenset(features)

    @property
    def dialect_name_zh(self) -> str | None:
        return DIALECTS[self.dialect][0] if self.dialect else None

    def to_dict(self) -> dict:
        return {
            "raw": self.raw,
            "dialect": self.dialect,
            "language": self.language,
            "emotion": self.emotion,
            "styles": list(self.styles),
            "speed": self.speed,
            "free_text": self.free_text,
            "required_features": sorted(self.required_features),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Instruction:
        """The instruction ``to_dict`` wrote (a job message to a GPU host carries it this way)."""
        return cls(
            raw=str(data["raw"]),
            dialect=data.get("dialect"),
            language=data.get("language"),
            emotion=data.get("emotion"),
            styles=tuple(data.get("styles") or ()),
            speed=float(data.get("speed", 1.0)),
            free_text=str(data.get("free_text") or ""),
        )


def _english_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    ordered = sorted(words, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(re.escape(w) for w in ordered) + r")\b", re.I)


def _chinese_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    ordered = sorted(words, key=len, reverse=True)
    return re.compile("|".join(re.escape(w) for w in ordered))


_DIALECT_PATTERNS = [(key, _chinese_pattern(zh), _english_pattern(en)) for key, (_, _, zh, en) in DIALECTS.items()]
_EMOTION_PATTERNS = [(key, _chinese_pattern(zh), _english_pattern(en)) for key, (zh, en) in EMOTIONS.items()]
_VOLUME_PATTERNS = [(key, _chinese_pattern(zh), _english_pattern(en)) for key, (zh, en) in VOLUME_STYLES.items()]
# "Sichuan dialect" / "Sichuan accent" match the bare place name; "dialect" is filler.


def _first_match(text: str, patterns) -> tuple[str | None, list[tuple[int, int]]]:
    best: tuple[int, str, tuple[int, int]] | None = None
    for key, *compiled in patterns:
        for pattern in compiled:
            match = pattern.search(text)
            if match and (best is None or match.start() < best[0]):
                best = (match.start(), key, match.span())
    if best is None:
        return None, []
    return best[1], [best[2]]


def parse_instruction(text: str | None) -> Instruction | None:
    """Parse an instruction; ``None`` or blank gives ``None``.

    The earliest-mentioned dialect and emotion win when several are named ("happy, no,
    sad" is ambiguous anyway); all volume/speed styles named are kept. Recognises
    Chinese wording ("用四川话说", "开心地", "说得慢一点", "大声") and English ("in
    Sichuanese", "Sichuan dialect", "sadly", "slowly", "faster", "loudly", "1.5x").
    """
    if text is None:
        return None
    raw = normalize_text(text)
    if not raw:
        return None
    spans: list[tuple[int, int]] = []

    dialect, found = _first_match(raw, _DIALECT_PATTERNS)
    spans += found
    emotion, found = _first_match(raw, _EMOTION_PATTERNS)
    spans += found

    styles: set[str] = set()
    for key, zh, en in _VOLUME_PATTERNS:
        for pattern in (zh, en):
            for match in pattern.finditer(raw):
                styles.add(key)
                spans.append(match.span())

    speed = 1.0
    seen_direction: set[str] = set()
    for style, factor, pattern in _SPEED_RULES:
        for match in pattern.finditer(raw):
            # An emotion word that contains 快 (快乐) was already consumed above.
            if any(start <= match.start() < end for start, end in spans):
                continue
            spans.append(match.span())
            if style not in seen_direction:
                seen_direction.add(style)
                styles.add(style)
                speed = speed * factor
    number = _SPEED_NUMBER.search(raw)
    if number:
        speed = float(number.group(1))
        spans.append(number.span())
        if speed != 1:
            styles.add("slow" if speed < 1 else "fast")
    if {"slow", "fast"} <= styles:
        # Contradictory wording cancels out rather than guessing.
        styles -= {"slow", "fast"}
        speed = 1.0
    speed = round(min(SPEED_MAX, max(SPEED_MIN, speed)), 3)

    free_text = _free_text(raw, spans)

    return Instruction(
        raw=raw,
        dialect=dialect,
        language=DIALECT_LANGUAGE.get(dialect) if dialect else None,
        emotion=emotion,
        styles=tuple(sorted(styles)),
        speed=speed,
        free_text=free_text,
        matched=tuple(raw[s:e] for s, e in sorted(spans)),
    )
