"""Instruction parsing from Chinese and English wording, and the plan features it needs."""

from __future__ import annotations

import pytest

from inference.text import DIALECTS, parse_instruction


@pytest.mark.parametrize(
    ("wording", "dialect", "language"),
    [
        ("用四川话说这句话", "sichuan", None),
        ("四川话", "sichuan", None),
        ("in Sichuanese", "sichuan", None),
        ("Sichuan dialect, please", "sichuan", None),
        ("用广东话说", "cantonese", "yue"),
        ("粤语", "cantonese", "yue"),
        ("speak Cantonese", "cantonese", "yue"),
        ("用东北话说", "dongbei", None),
        ("with a Northeastern accent", "dongbei", None),
        ("用山西话说", "shanxi", None),
        ("用陕西话说", "shaanxi", None),
        ("in Shaanxi dialect", "shaanxi", None),
        ("闽南语", "minnan", None),
        ("in Hokkien", "minnan", None),
        ("上海话", "shanghai", None),
        ("Shanghainese", "shanghai", None),
        ("天津话", "tianjin", None),
    ],
)
def test_dialects(wording, dialect, language):
    instruction = parse_instruction(wording)
    assert instruction.dialect == dialect
    assert instruction.language == language
    assert instruction.required_features == frozenset({"dialect"})


def test_exactly_the_seventeen_dialects_each_recognised_in_both_languages():
    assert len(DIALECTS) == 17
    names_zh = {zh for zh, _, _, _ in DIALECTS.values()}
    assert names_zh == {
        "广东话", "东北话", "甘肃话", "贵州话", "河南话", "湖北话", "湖南话", "江西话", "闽南话",
        "宁夏话", "山西话", "陕西话", "山东话", "上海话", "四川话", "天津话", "云南话",
    }  # fmt: skip
    for key, (zh, en, _, _) in DIALECTS.items():
        assert parse_instruction(f"用{zh}说这句话").dialect == key
        assert parse_instruction(f"Please read it in {en}").dialect == key


@pytest.mark.parametrize(
    ("wording", "emotion"),
    [
        ("开心地说", "happy"),
        ("用快乐的语气说", "happy"),
        ("happily", "happy"),
        ("sadly", "sad"),
        ("伤心一点", "sad"),
        ("in a sad tone", "sad"),
        ("生气地说", "angry"),
        ("angrily", "angry"),
        ("惊讶", "surprised"),
        ("calmly", "calm"),
    ],
)
def test_emotions(wording, emotion):
    instruction = parse_instruction(wording)
    assert instruction.emotion == emotion
    assert instruction.required_features == frozenset({"emotion"})
    assert instruction.speed == 1.0  # "快乐" is joy, not speed


@pytest.mark.parametrize(
    ("wording", "styles", "speed"),
    [
        ("说得慢一点", ("slow",), 0.8),
        ("慢慢说", ("slow",), 0.8),
        ("slowly", ("slow",), 0.8),
        ("very slowly", ("slow",), 0.65),
        ("非常慢", ("slow",), 0.65),
        ("faster", ("fast",), 1.25),
        ("说快一点", ("fast",), 1.25),
        ("1.5x", ("fast",), 1.5),
        ("0.75倍速", ("slow",), 0.75),
        ("大声说", ("loud",), 1.0),
        ("loudly", ("loud",), 1.0),
        ("小声说", ("soft",), 1.0),
        ("whisper it softly", ("soft",), 1.0),
        ("loudly and quickly", ("fast", "loud"), 1.25),
        ("slowly but faster", (), 1.0),  # contradictory speed words cancel
        ("9x", ("fast",), 2.0),  # clamped
    ],
)
def test_styles_and_speed(wording, styles, speed):
    instruction = parse_instruction(wording)
    assert instruction.styles == styles
    assert instruction.speed == pytest.approx(speed)
    assert instruction.free_text == ""


@pytest.mark.parametrize(
    ("wording", "free_text"),
    [
        ("像一个海盗一样说话", "像一个海盗一样说话"),
        ("speak like a pirate", "speak like a pirate"),
        ("sadly and slowly, like a pirate", "like a pirate"),
        ("用开心的语气，像播音员一样说", "像播音员一样说"),
    ],
)
def test_free_text_is_kept_and_counts_as_style(wording, free_text):
    instruction = parse_instruction(wording)
    assert instruction.free_text == free_text
    assert "style" in instruction.required_features


def test_combined_instruction():
    instruction = parse_instruction("please say it in Shanghainese and happily, a bit faster")
    assert (instruction.dialect, instruction.emotion, instruction.styles) == ("shanghai", "happy", ("fast",))
    assert instruction.speed == pytest.approx(1.25)
    assert instruction.required_features == frozenset({"dialect", "emotion", "style"})
    data = instruction.to_dict()
    assert data["required_features"] == ["dialect", "emotion", "style"]
    assert data["raw"] == "please say it in Shanghainese and happily, a bit faster"


@pytest.mark.parametrize("blank", [None, "", "   ", "\u200b"])
def test_blank_instruction_is_none(blank):
    assert parse_instruction(blank) is None


def test_filler_only_instruction_needs_no_feature():
    instruction = parse_instruction("请说这句话")
    assert instruction.required_features == frozenset()
