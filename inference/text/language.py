"""Language detection for synthesis text: zh, yue, en, ja, ko."""

from __future__ import annotations

import re

from inference.text.tags import parse_tags

LANGUAGES = ("zh", "yue", "en", "ja", "ko")
# What people see for each language code (portal, playground).
LANGUAGE_NAMES = {"zh": "Mandarin", "yue": "Cantonese", "en": "English", "ja": "Japanese", "ko": "Korean"}

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")
_LATIN = re.compile(r"[A-Za-z]")
# Characters that written Cantonese uses and Mandarin practically never does.
_CANTONESE = set("嘅咗唔喺佢哋冇嘢啲咁乜嚟睇揾搵畀俾嗰啱咩噉嘞喎嚿攰嘥咪冚氹揸瞓踎")


def detect_language(text: str, *, default: str = "zh") -> str:
    """Best guess of the language ``text`` is written in.

    Kana means Japanese (Japanese text mixes kana with kanji; Chinese never uses kana);
    Hangul means Korean; Han characters mean Chinese, Cantonese when any character only
    written Cantonese uses appears; otherwise Latin letters mean English. Pinyin tags
    count as Chinese and ARPAbet tags as English. Text with no letters at all gets
    ``default`` (Mandarin, the product default).
    """
    segments = parse_tags(text)
    plain = "".join(s.value for s in segments if s.kind == "text")
    kana = len(_KANA.findall(plain))
    hangul = len(_HANGUL.findall(plain))
    han = len(_HAN.findall(plain)) + sum(1 for s in segments if s.kind == "pinyin")
    latin = len(_LATIN.findall(plain)) + sum(1 for s in segments if s.kind == "arpabet")
    if kana:
        return "ja"
    if hangul and hangul >= han:
        return "ko"
    if han:
        return "yue" if any(ch in _CANTONESE for ch in plain) else "zh"
    if latin:
        return "en"
    return default
