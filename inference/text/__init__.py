"""Text front end: normalization, request limits, inline tags, language, instructions.

Pure functions with no Django models; token counting lives in ``billing.metering``.
"""

from inference.text.errors import InstructionInvalid, TextInvalid
from inference.text.instruction import DIALECTS, EMOTIONS, FEATURES, Instruction, parse_instruction
from inference.text.language import LANGUAGE_NAMES, LANGUAGES, detect_language
from inference.text.normalize import (
    INSTRUCTION_MAX_CHARS,
    TEXT_MAX_CHARS,
    ValidatedText,
    normalize_text,
    validate_request_text,
)
from inference.text.tags import SOUND_TAGS, TextSegment, parse_tags, strip_tags

__all__ = [
    "DIALECTS",
    "EMOTIONS",
    "FEATURES",
    "INSTRUCTION_MAX_CHARS",
    "LANGUAGES",
    "LANGUAGE_NAMES",
    "SOUND_TAGS",
    "TEXT_MAX_CHARS",
    "Instruction",
    "InstructionInvalid",
    "TextInvalid",
    "TextSegment",
    "ValidatedText",
    "detect_language",
    "normalize_text",
    "parse_instruction",
    "parse_tags",
    "strip_tags",
    "validate_request_text",
]
