"""Inline tags in synthesis text: pronunciation tags and sound tags.

Conventions (CosyVoice 3's, which the product follows):
- ``[h][ào]`` — pinyin pieces; consecutive pieces spell one Mandarin syllable (``hào``).
  Tones may be marks (``ào``) or digits (``[hao4]``).
- ``[M][AY0][N][UW1][T]`` — ARPAbet phonemes (uppercase, optional stress digit 0-2);
  consecutive phonemes spell one English word.
- ``[laughter]``, ``[breath]``… — non-verbal sounds from a fixed list.
Brackets that match none of these are ordinary text (``[1]`` in a citation stays ``[1]``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

SOUND_TAGS = frozenset(
    {
        "laughter",
        "breath",
        "quick_breath",
        "cough",
        "sigh",
        "noise",
        "clucking",
        "hissing",
        "lipsmack",
        "mn",
        "vocalized-noise",
    }
)

ARPABET_PHONEMES = frozenset(
    "AA AE AH AO AW AX AXR AY EH ER EY IH IX IY OW OY UH UW UX "
    "B CH D DH DX EL EM EN F G HH JH K L M N NG NX P Q R S SH T TH V W WH Y Z ZH".split()
)

_TAG = re.compile(r"\[([^\[\]\s]{1,24})\]")
_ARPABET = re.compile(r"^([A-Z]{1,3})([012])?$")
# Pinyin pieces: letters (ü may be written v) with tone marks, optionally a tone digit.
_PINYIN_MARKED = "āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜüńňǹḿ"
_PINYIN = re.compile(rf"^[a-z{_PINYIN_MARKED}v]{{1,6}}[1-5]?$")
_PINYIN_INITIALS = frozenset("b p m f d t n l g k h j q x zh ch sh r z c s y w".split())
_PINYIN_FINALS = frozenset(
    "a o e i u v ai ei ui ao ou iu ie ve ue er an en in un vn ang eng ing ong "
    "ia iao ian iang iong ua uo uai uan uang ueng ng m n".split()
)
_TONE_FREE = str.maketrans("āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜüńňǹḿ", "aaaaeeeeiiiioooouuuuvvvvvnnnm")


def _is_pinyin(body: str) -> bool:
    """An initial, a final, or initial + final, with tone marks or a tone digit."""
    if not _PINYIN.match(body):
        return False
    bare = body.rstrip("12345").translate(_TONE_FREE)
    if bare in _PINYIN_INITIALS or bare in _PINYIN_FINALS:
        return True
    for size in (2, 1):
        if bare[:size] in _PINYIN_INITIALS and bare[size:] in _PINYIN_FINALS:
            return True
    return False


SegmentKind = Literal["text", "pinyin", "arpabet", "sound"]


@dataclass(frozen=True)
class TextSegment:
    """One piece of parsed text.

    ``kind`` is ``text`` (plain words), ``pinyin`` (one syllable built from one or more
    consecutive pinyin tags, ``value`` like ``hào``), ``arpabet`` (one word, ``value``
    like ``M AY0 N UW1 T``) or ``sound`` (``value`` like ``laughter``). ``tags`` is the
    number of bracketed tags the segment was built from (0 for plain text).
    """

    kind: SegmentKind
    value: str
    tags: int = 0


def _tag_kind(body: str) -> SegmentKind | None:
    if body.lower() in SOUND_TAGS:
        return "sound"
    match = _ARPABET.match(body)
    if match and match.group(1) in ARPABET_PHONEMES:
        return "arpabet"
    if _is_pinyin(body):
        return "pinyin"
    return None


def parse_tags(text: str) -> list[TextSegment]:
    """Split ``text`` into plain-text, pronunciation and sound segments, in order.

    Adjacent pinyin tags merge into one syllable and adjacent ARPAbet tags into one
    word, because that is how the tags are written: ``[h][ào]`` is the syllable hào.
    """
    segments: list[TextSegment] = []
    position = 0

    def add_text(chunk: str) -> None:
        if not chunk:
            return
        if segments and segments[-1].kind == "text":
            segments[-1] = TextSegment("text", segments[-1].value + chunk)
        else:
            segments.append(TextSegment("text", chunk))

    for match in _TAG.finditer(text):
        kind = _tag_kind(match.group(1))
        if kind is None:
            continue
        add_text(text[position : match.start()])
        body = match.group(1)
        previous = segments[-1] if segments else None
        joins = previous is not None and previous.kind == kind and position == match.start() and kind != "sound"
        if joins and kind == "pinyin":
            segments[-1] = TextSegment("pinyin", previous.value + body, previous.tags + 1)
        elif joins and kind == "arpabet":
            segments[-1] = TextSegment("arpabet", f"{previous.value} {body}", previous.tags + 1)
        else:
            segments.append(TextSegment(kind, body.lower() if kind == "sound" else body, 1))
        position = match.end()
    add_text(text[position:])
    return segments


def strip_tags(text: str) -> str:
    """Text with every recognised tag removed (for language detection and display)."""
    return "".join(segment.value for segment in parse_tags(text) if segment.kind == "text")
