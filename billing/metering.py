"""Token metering: the one function that turns synthesis text into billable tokens.

PRODUCT.md "Token metering", made exact here:
1. each CJK character (Han incl. 々〆〇, hiragana, katakana incl. ー, Hangul syllable) is 1 token;
2. each run of other letters/digits is 1 token; an apostrophe between letters keeps the run
   (``don't``), and ``.``/``,`` between digits keeps a number whole (``3.14``, ``1,000``);
3. each bracketed tag without whitespace inside (``[h]``, ``[ào]``, ``[AA1]``, ``[laughter]``) is 1 token;
4. punctuation, symbols and whitespace are 0 tokens;
5. the instruction is counted by the same rules and added.
The API quotes and reserves with it, the portal's live counter shows it, billing charges it.
"""

from __future__ import annotations

import re

# Han (basic, ext. A, compatibility, ext. B+ planes), 々〆〇, hiragana, katakana (incl. ー,
# phonetic extensions, half-width), Hangul syllables. ・ (U+30FB) is punctuation: excluded.
_CJK = (
    "\u3005-\u3007"
    "\u3041-\u3096\u309d-\u309f"
    "\u30a1-\u30fa\u30fc-\u30ff"
    "\u31f0-\u31ff"
    "\u3400-\u4dbf"
    "\u4e00-\u9fff"
    "\uac00-\ud7a3"
    "\uf900-\ufaff"
    "\uff66-\uff9f"
    "\U00020000-\U0003134f"
)
# A letter or digit that is not CJK (Latin, accented Latin, Cyrillic, full-width Latin...).
_ALNUM = rf"(?:(?![{_CJK}])[^\W_])"
_TOKEN = re.compile(
    rf"""
    (?P<tag>\[[^\[\]\s]{{1,32}}\])
    | (?P<cjk>[{_CJK}])
    | (?P<number>\d+(?:[.,]\d+)+)
    | (?P<word>{_ALNUM}+(?:['’]{_ALNUM}+)*)
    """,
    re.VERBOSE,
)


def _count(text: str) -> int:
    return sum(1 for _ in _TOKEN.finditer(text))


def count_tokens(text: str, instruction: str = "") -> int:
    """Billable tokens for ``text`` plus its optional natural-language ``instruction``."""
    if not isinstance(text, str) or not isinstance(instruction, str):
        raise TypeError("count_tokens takes text and instruction as str")
    return _count(text) + (_count(instruction) if instruction else 0)
