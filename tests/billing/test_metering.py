"""Token metering: PRODUCT.md's rules, table-driven."""

import pytest

from billing.metering import count_tokens

CASES = [
    # PRODUCT.md's examples
    ("她的爱好[h][ào]", "", 6),
    ("她爱好干净", "", 5),
    ("Hello, world!", "", 2),
    ("", "用四川话说这句话", 8),
    # Chinese
    ("你好", "", 2),
    ("你好，世界！", "", 4),
    ("今天天气很好。", "", 6),
    ("“引号”和《书名》", "", 5),
    ("一二三四五六七八九十", "", 10),
    ("々〆〇", "", 3),
    ("𠀀𪚥", "", 2),  # CJK extension B characters
    ("廣東話", "", 3),
    # English
    ("don't", "", 1),
    ("Don't stop me now", "", 4),
    ("rock’n’roll", "", 1),
    ("It's 3 o'clock", "", 3),
    ("well-known", "", 2),
    ("e-mail me at a.b@example.com", "", 8),
    ("café naïve résumé", "", 3),
    ("ABC123 x9", "", 2),
    ("3.14", "", 1),
    ("1,000,000 dollars", "", 2),
    ("Version 2.0.1 released.", "", 3),
    ("Ｈｅｌｌｏ", "", 1),  # full-width Latin is still one word
    ("Привет мир", "", 2),
    # Japanese
    ("こんにちは", "", 5),
    ("カタカナ", "", 4),
    ("ラーメン", "", 4),  # ー counts like any kana
    ("ｶﾀｶﾅ", "", 4),  # half-width katakana
    ("東京・大阪", "", 4),  # ・ is punctuation
    ("私はAIです。", "", 5),
    # Korean
    ("안녕하세요", "", 5),
    ("한국어 텍스트!", "", 6),
    ("서울 2024", "", 3),
    # tags
    ("[laughter]", "", 1),
    ("[breath]你好[laughter]", "", 4),
    ("[M][AY0][N][UW1][T]", "", 5),
    ("[AA1]", "", 1),
    ("[hao4]", "", 1),
    ("[a b]", "", 2),  # whitespace inside: not a tag, just two words
    ("[]", "", 0),
    ("[[h]]", "", 1),
    # punctuation and whitespace only
    ("", "", 0),
    ("   \n\t ", "", 0),
    ("!?.,;:…—～@#$%^&*()", "", 0),
    ("。，、！？", "", 0),
    # mixed
    ("我爱Python编程", "", 5),
    ("iPhone 15很好用", "", 5),
    ("Hello你好", "", 3),
    ("中文English日本語한국어", "", 9),
    # instructions are added
    ("Hello", "sadly", 2),
    ("你好", "用广东话说", 7),
    ("Hi!", "Speak slowly, please.", 4),
    ("[h][ào]", "开心地说", 6),
]


@pytest.mark.parametrize(("text", "instruction", "expected"), CASES)
def test_count_tokens(text, instruction, expected):
    assert count_tokens(text, instruction) == expected


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40


def test_instruction_defaults_to_nothing():
    assert count_tokens("你好") == count_tokens("你好", "") == 2


@pytest.mark.parametrize("bad", [None, 42, b"bytes"])
def test_non_text_is_refused(bad):
    with pytest.raises(TypeError):
        count_tokens(bad)
