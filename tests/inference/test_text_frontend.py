"""Text front end: normalization, limits, tags and language detection."""

from __future__ import annotations

import pytest

from console.errors import VoxfleetError
from inference.text import (
    INSTRUCTION_MAX_CHARS,
    TEXT_MAX_CHARS,
    InstructionInvalid,
    TextInvalid,
    TextSegment,
    detect_language,
    normalize_text,
    parse_tags,
    strip_tags,
    validate_request_text,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  hello   world \n", "hello world"),
        ("ＡＢＣ１２３", "ABC123"),  # full-width Latin folds to ASCII
        ("她的爱好[h][ào]", "她的爱好[h][ào]"),  # Han and tone marks untouched
        ("“quoted” ‘text’", "\"quoted\" 'text'"),
        ("zero\u200bwidth\ufeff", "zerowidth"),
        ("line1\r\nline2\tend", "line1 line2 end"),
        ("你好，世界。", "你好,世界。"),  # NFKC folds the full-width comma only
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_validate_accepts_limits_and_returns_normalized():
    result = validate_request_text("  你" * 1 + "好" * (TEXT_MAX_CHARS - 1) + "  ", "  用四川话说  ")
    assert len(result.text) == TEXT_MAX_CHARS
    assert result.instruction == "用四川话说"
    assert validate_request_text("hi", "x" * INSTRUCTION_MAX_CHARS).instruction == "x" * INSTRUCTION_MAX_CHARS


@pytest.mark.parametrize(
    ("text", "instruction", "error", "code"),
    [
        ("", None, TextInvalid, "text_empty"),
        ("   \n\t ", None, TextInvalid, "text_empty"),
        ("\u200b\u200b", None, TextInvalid, "text_empty"),
        ("好" * (TEXT_MAX_CHARS + 1), None, TextInvalid, "text_too_long"),
        ("a" * 150 + " " + "b" * 50, None, TextInvalid, "text_too_long"),
        ("hello", "慢" * (INSTRUCTION_MAX_CHARS + 1), InstructionInvalid, "instruction_too_long"),
        (None, None, TextInvalid, "text_empty"),
        (123, None, TextInvalid, "text_not_string"),
        ("hello", 5, InstructionInvalid, "instruction_not_string"),
    ],
)
def test_validate_refuses_with_code_and_400(text, instruction, error, code):
    with pytest.raises(error) as caught:
        validate_request_text(text, instruction)
    assert isinstance(caught.value, VoxfleetError)
    assert caught.value.code == code
    assert caught.value.status == 400
    assert caught.value.message


def test_too_long_message_names_length_and_limit():
    with pytest.raises(TextInvalid) as caught:
        validate_request_text("字" * 250)
    assert "250" in caught.value.message and "200" in caught.value.message
    assert caught.value.as_dict()["error"]["limit"] == 200


def test_blank_instruction_counts_as_none():
    assert validate_request_text("hi", "   ").instruction is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("她的爱好[h][ào]", [("text", "她的爱好", 0), ("pinyin", "hào", 2)]),
        ("对报道[j][ǐ]予好评", [("text", "对报道", 0), ("pinyin", "jǐ", 2), ("text", "予好评", 0)]),
        ("[hao4]", [("pinyin", "hao4", 1)]),
        ("a [M][AY0][N][UW1][T] b", [("text", "a ", 0), ("arpabet", "M AY0 N UW1 T", 5), ("text", " b", 0)]),
        ("[laughter]好笑[breath]", [("sound", "laughter", 1), ("text", "好笑", 0), ("sound", "breath", 1)]),
        ("[Laughter][laughter]", [("sound", "laughter", 1), ("sound", "laughter", 1)]),
        ("see [1] and [note]", [("text", "see [1] and [note]", 0)]),  # not tags: plain text
        ("[XYZ1]", [("text", "[XYZ1]", 0)]),  # not an ARPAbet phoneme
        ("[h] [ào]", [("pinyin", "h", 1), ("text", " ", 0), ("pinyin", "ào", 1)]),  # a gap splits syllables
    ],
)
def test_parse_tags(text, expected):
    assert parse_tags(text) == [TextSegment(kind, value, tags) for kind, value, tags in expected]


def test_strip_tags():
    assert strip_tags("你好[laughter]世界[h][ǎo]") == "你好世界"


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("你好，世界", "zh"),
        ("我用iPhone拍照", "zh"),
        ("佢哋喺度食緊飯", "yue"),
        ("我唔知道", "yue"),
        ("こんにちは", "ja"),
        ("今日は良い天気ですね", "ja"),  # kanji + kana is Japanese, not Chinese
        ("カタカナ", "ja"),
        ("안녕하세요", "ko"),
        ("Hello, world!", "en"),
        ("[M][AY0][N][UW1][T]", "en"),
        ("[n][ǐ][h][ǎo]", "zh"),
        ("12345 !!", "zh"),  # nothing to go on: the product default
    ],
)
def test_detect_language(text, language):
    assert detect_language(text) == language
