"""Turn request text into "runs" the CPU engine can hand to espeak-ng or Piper.

A run is a stretch of text for one synthesizer voice (Mandarin as tone-numbered pinyin,
Cantonese as Han characters, Japanese as hiragana, Korean as Hangul, English as words or
raw phonemes) or a non-verbal sound. Mixed text ("我用iPhone拍照") becomes several runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from inference.text.tags import TextSegment, parse_tags

RunKind = Literal["zh", "yue", "en", "ja", "ko", "en-phonemes", "sound"]


@dataclass(frozen=True)
class Run:
    """One piece to synthesize: ``kind`` names the synthesizer language; ``text`` its input."""

    kind: RunKind
    text: str


_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_LATIN_RUN = re.compile(r"[A-Za-z][A-Za-z0-9'\-]*(?:[ ]+[A-Za-z][A-Za-z0-9'\-]*)*")
_CJK_PUNCT = str.maketrans(
    {
        "，": ",",
        "、": ",",
        "。": ".",
        "！": "!",
        "？": "?",
        "；": ";",
        "：": ":",
        "（": " ",
        "）": " ",
        "《": " ",
        "》": " ",
        "「": " ",
        "」": " ",
        "『": " ",
        "』": " ",
        "【": " ",
        "】": " ",
        "—": ",",
        "…": ".",
        "～": " ",
        "·": " ",
        '"': " ",
    }
)

# ARPAbet -> (IPA as Piper's espeak phoneme set writes it, espeak-ng phoneme mnemonic).
ARPABET = {
    "AA": ("ɑː", "A:"),
    "AE": ("æ", "a"),
    "AH": ("ʌ", "V"),
    "AO": ("ɔː", "O:"),
    "AW": ("aʊ", "aU"),
    "AX": ("ə", "@"),
    "AXR": ("ɚ", "3"),
    "AY": ("aɪ", "aI"),
    "EH": ("ɛ", "E"),
    "ER": ("ɜː", "3:"),
    "EY": ("eɪ", "eI"),
    "IH": ("ɪ", "I"),
    "IX": ("ɪ", "I"),
    "IY": ("iː", "i:"),
    "OW": ("oʊ", "oU"),
    "OY": ("ɔɪ", "OI"),
    "UH": ("ʊ", "U"),
    "UW": ("uː", "u:"),
    "UX": ("uː", "u:"),
    "B": ("b", "b"),
    "CH": ("tʃ", "tS"),
    "D": ("d", "d"),
    "DH": ("ð", "D"),
    "DX": ("ɾ", "t#"),
    "EL": ("əl", "@L"),
    "EM": ("əm", "@m"),
    "EN": ("ən", "@n"),
    "F": ("f", "f"),
    "G": ("ɡ", "g"),
    "HH": ("h", "h"),
    "JH": ("dʒ", "dZ"),
    "K": ("k", "k"),
    "L": ("l", "l"),
    "M": ("m", "m"),
    "N": ("n", "n"),
    "NG": ("ŋ", "N"),
    "NX": ("ŋ", "N"),
    "P": ("p", "p"),
    "Q": ("ʔ", "?"),
    "R": ("ɹ", "r"),
    "S": ("s", "s"),
    "SH": ("ʃ", "S"),
    "T": ("t", "t"),
    "TH": ("θ", "T"),
    "V": ("v", "v"),
    "W": ("w", "w"),
    "WH": ("w", "w"),
    "Y": ("j", "j"),
    "Z": ("z", "z"),
    "ZH": ("ʒ", "Z"),
}
_VOWELS = {
    "AA",
    "AE",
    "AH",
    "AO",
    "AW",
    "AX",
    "AXR",
    "AY",
    "EH",
    "ER",
    "EY",
    "IH",
    "IX",
    "IY",
    "OW",
    "OY",
    "UH",
    "UW",
    "UX",
}


def arpabet_to_phonemes(value: str, *, ipa: bool) -> str:
    """``"M AY0 N UW1 T"`` -> IPA (``maɪnˈuːt``) or espeak mnemonics (``maIn'u:t``)."""
    out = []
    for token in value.split():
        base, stress = token.rstrip("012"), token[len(token.rstrip("012")) :]
        phone_ipa, phone_espeak = ARPABET[base]
        if base == "AH" and stress == "0":
            phone_ipa, phone_espeak = "ə", "@"
        if base in _VOWELS and stress in {"1", "2"}:
            mark = ("ˈ" if stress == "1" else "ˌ") if ipa else ("'" if stress == "1" else ",")
            out.append(mark)
        out.append(phone_ipa if ipa else phone_espeak)
    return "".join(out)


_DIGITS = "零一二三四五六七八九"
_UNITS = ((100_000_000, "亿"), (10_000, "万"), (1000, "千"), (100, "百"), (10, "十"))


def chinese_number(number: int, *, leading: bool = True) -> str:
    """Read an integer the Mandarin way: 2024 -> 二千零二十四, 15 -> 十五, 110 -> 一百一十."""
    if number < 10:
        return _DIGITS[number]
    for size, unit in _UNITS:
        if number >= size:
            head, rest = divmod(number, size)
            # 十五 at the start of a number, but 一百一十 inside one.
            text = ("" if (size == 10 and head == 1 and leading) else chinese_number(head, leading=leading)) + unit
            if rest:
                # A gap of a whole unit place needs an explicit 零 (1005 -> 一千零五).
                text += ("零" if rest < size // 10 else "") + chinese_number(rest, leading=False)
            return text
    return ""


def _digits_to_chinese(match: re.Match[str]) -> str:
    whole, _, fraction = match.group(0).partition(".")
    # Long digit strings (phone numbers, years written as digits) read digit by digit.
    spoken = "".join(_DIGITS[int(d)] for d in whole) if len(whole) > 9 else chinese_number(int(whole))
    if fraction:
        spoken += "点" + "".join(_DIGITS[int(d)] for d in fraction)
    return spoken


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@lru_cache(maxsize=4096)
def _heteronyms(char: str) -> frozenset[str]:
    from pypinyin import Style, pinyin

    return frozenset(pinyin(char, heteronym=True, style=Style.TONE3, neutral_tone_with_five=True)[0])


def _tone3(syllable: str) -> str:
    from pypinyin.contrib.tone_convert import to_tone3

    converted = to_tone3(syllable.replace("ü", "v"), v_to_u=False, neutral_tone_with_five=True)
    return converted if converted[-1:].isdigit() else converted + "5"


def mandarin_pinyin(text: str) -> str:
    """Han text -> space-separated tone-numbered pinyin for espeak-ng's ``cmn-latn-pinyin``."""
    from pypinyin import Style, lazy_pinyin

    text = _NUMBER.sub(_digits_to_chinese, text).translate(_CJK_PUNCT)
    items = lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True, errors=lambda chunk: [chunk])
    return re.sub(r"\s+", " ", " ".join(items)).strip()


class FrontEnd:
    """Builds runs; holds the (slow to create) Japanese kana converter."""

    def __init__(self) -> None:
        import pykakasi

        self._kakasi = pykakasi.kakasi()

    def kana(self, text: str) -> str:
        return "".join(item["hira"] for item in self._kakasi.convert(text)).translate(_CJK_PUNCT)

    def runs(self, text: str, language: str) -> list[Run]:
        runs: list[Run] = []
        segments = parse_tags(text)
        for index, segment in enumerate(segments):
            if segment.kind == "sound":
                runs.append(Run("sound", segment.value))
            elif segment.kind == "arpabet":
                runs.append(Run("en-phonemes", segment.value))
            elif segment.kind == "pinyin":
                self._pinyin_tag(runs, segment, index, segments)
            else:
                runs.extend(self._plain_runs(segment.value, language))
        return _merge(runs)

    def _pinyin_tag(self, runs: list[Run], segment: TextSegment, index: int, segments: list[TextSegment]) -> None:
        syllable = _tone3(segment.value)
        previous = segments[index - 1] if index else None
        last_char = previous.value[-1:] if previous is not None and previous.kind == "text" else ""
        # Two conventions meet here: CosyVoice writes the tag *instead of* a character
        # ("报道[j][ǐ]予"), the product's own example writes it *after* the character it
        # corrects ("爱好[h][ào]"). When the tag is one of the preceding character's
        # readings it is taken as a correction of that character, otherwise as a syllable.
        if last_char and re.match(rf"[{_HAN}]", last_char) and syllable in _heteronyms(last_char):
            if runs and runs[-1].kind == "zh" and runs[-1].text:
                words = runs[-1].text.rsplit(" ", 1)
                runs[-1] = Run("zh", (words[0] + " " + syllable) if len(words) == 2 else syllable)
                return
        runs.append(Run("zh", syllable))

    def _plain_runs(self, text: str, language: str) -> list[Run]:
        """Split plain text by script and route each stretch to a synthesizer."""
        if language == "en":
            parts: list[Run] = []
            for piece in re.split(rf"([{_HAN}]+)", text):
                if not piece:
                    continue
                if re.match(rf"[{_HAN}]", piece):
                    parts.append(Run("zh", mandarin_pinyin(piece)))
                else:
                    parts.append(Run("en", piece))
            return parts
        # Other languages: Latin words (brand names, English phrases) go to the English
        # voice; everything else stays together so kanji+kana and Han phrases keep their
        # context for reading conversion ("良い" is よい, "良" alone is りょう).
        parts = []
        position = 0
        for match in _LATIN_RUN.finditer(text):
            if text[position : match.start()]:
                parts.append(self._native(text[position : match.start()], language))
            parts.append(Run("en", match.group(0)))
            position = match.end()
        if text[position:]:
            parts.append(self._native(text[position:], language))
        return parts

    def _native(self, text: str, language: str) -> Run:
        if language == "zh":
            return Run("zh", mandarin_pinyin(text))
        if language == "ja":
            return Run("ja", self.kana(text))
        if language == "yue":
            return Run("yue", text.translate(_CJK_PUNCT))
        return Run(language, text)  # type: ignore[arg-type]


def _merge(runs: list[Run]) -> list[Run]:
    merged: list[Run] = []
    for run in runs:
        if merged and run.kind == merged[-1].kind and run.kind not in {"sound", "en-phonemes"}:
            merged[-1] = Run(run.kind, f"{merged[-1].text} {run.text}")
        else:
            merged.append(run)
    # Runs that hold only punctuation or spaces make no sound; they only add a call.
    return [r for r in merged if r.kind in {"sound", "en-phonemes"} or re.search(r"\w", r.text)]
