"""Text normalization and the request-text limits from PRODUCT.md (Synthesis request rules)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from inference.text.errors import InstructionInvalid, TextInvalid

TEXT_MAX_CHARS = 200
INSTRUCTION_MAX_CHARS = 100

# Control and format characters (zero-width spaces, BOMs, bidi marks) are invisible to the
# user but would reach the engine and the 200-character guard, so they are removed.
_INVISIBLE = re.compile(r"[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_SPACES = re.compile(r"\s+")
# Something to speak: a letter or digit of any script, or a bracketed tag. Exactly what the
# token meter (billing.metering) counts, so text that passes here is never metered as 0.
_SPEAKABLE = re.compile(r"[^\W_]|\[[^\[\]\s]{1,32}\]")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00b4": "'", "`": "'"})


def normalize_text(text: str) -> str:
    """Return ``text`` in the one form every later step sees.

    NFKC folds full-width Latin letters and digits to ASCII (so ``ＡＢＣ１２`` meters and
    speaks like ``ABC12``) while leaving CJK characters and pinyin tone marks intact;
    curly quotes become straight ones; runs of whitespace (including newlines) become one
    space; the ends are trimmed.
    """
    if not isinstance(text, str):
        raise TextInvalid("Text must be a string.", code="text_not_string")
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    text = text.translate(_QUOTES)
    return _SPACES.sub(" ", text).strip()


@dataclass(frozen=True)
class ValidatedText:
    """Normalized request text and instruction that passed the length rules."""

    text: str
    instruction: str | None


def validate_request_text(text: str, instruction: str | None = None) -> ValidatedText:
    """Normalize and check the limits: text 1-200 characters, instruction at most 100.

    Lengths are counted after normalization, in Unicode code points (one Han character
    is one character, as the seed's out-of-memory guard intends). An instruction that
    is empty after normalization is treated as absent.
    """
    if text is None:
        raise TextInvalid("Text is required.", code="text_empty")
    clean = normalize_text(text)
    if not clean:
        raise TextInvalid("Text is empty: give 1 to 200 characters to speak.", code="text_empty")
    if not _SPEAKABLE.search(clean):
        raise TextInvalid(
            "Text has nothing to speak: it holds only punctuation, symbols or emoji. "
            "Give at least one word, number or character.",
            code="text_nothing_to_speak",
        )
    if len(clean) > TEXT_MAX_CHARS:
        raise TextInvalid(
            f"Text is too long: {len(clean)} characters, the limit is {TEXT_MAX_CHARS}. "
            "Split it into several requests.",
            code="text_too_long",
            length=len(clean),
            limit=TEXT_MAX_CHARS,
        )
    clean_instruction: str | None = None
    if instruction is not None:
        if not isinstance(instruction, str):
            raise InstructionInvalid("Instruction must be a string.", code="instruction_not_string")
        clean_instruction = normalize_text(instruction) or None
        if clean_instruction is not None and len(clean_instruction) > INSTRUCTION_MAX_CHARS:
            raise InstructionInvalid(
                f"Instruction is too long: {len(clean_instruction)} characters, the limit is {INSTRUCTION_MAX_CHARS}.",
                code="instruction_too_long",
                length=len(clean_instruction),
                limit=INSTRUCTION_MAX_CHARS,
            )
    return ValidatedText(text=clean, instruction=clean_instruction)


# Sentence ends in the languages we speak; a closing quote or bracket stays with its sentence.
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;…\n])[\"'”’」』）)]*\s*|(?<=\.)[\"'”’)]*\s+")


def split_sentences(text: str) -> list[str]:
    """Normalized text cut after each sentence end (。！？!?; and ". "), pieces non-empty.

    Pronunciation and sound tags (``[h][ào]``, ``[laughter]``) never contain sentence ends,
    so a cut never splits one.
    """
    pieces = [piece.strip() for piece in _SENTENCE_END.split(text)]
    return [piece for piece in pieces if piece]
