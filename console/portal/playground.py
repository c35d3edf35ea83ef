"""The playground's catalogue of instruction presets and the live quote.

The quote runs the very checks the API runs (text limits, instruction parsing, the
plan's feature gate, token counting), so what the page shows inline is what the API
would answer: one source of truth, no JavaScript port of the rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from billing.metering import count_tokens
from billing.models import Tenant
from console.errors import VoxfleetError
from inference.text.instruction import DIALECTS, parse_instruction
from inference.text.language import detect_language
from inference.text.normalize import INSTRUCTION_MAX_CHARS, TEXT_MAX_CHARS, normalize_text, validate_request_text

LANGUAGES = (
    ("zh", "Mandarin"),
    ("yue", "Cantonese"),
    ("en", "English"),
    ("ja", "Japanese"),
    ("ko", "Korean"),
)

# Instruction texts in the wording CosyVoice 3's instruct list uses; the API parses them
# back into dialect/emotion/style, so a preset is just a convenient way to type one.
EMOTION_PRESETS = (
    ("happy", "Happy · 开心", "用开心的语气说这句话"),
    ("sad", "Sad · 伤心", "用伤心的语气说这句话"),
    ("angry", "Angry · 生气", "用生气的语气说这句话"),
    ("surprised", "Surprised · 惊讶", "用惊讶的语气说这句话"),
    ("calm", "Calm · 平静", "用平静的语气说这句话"),
)
STYLE_PRESETS = (
    ("loud", "Loud · 大声", "大声说这句话"),
    ("soft", "Soft · 小声", "小声说这句话"),
    ("slow", "Slow · 慢一点", "说得慢一点"),
    ("fast", "Fast · 快一点", "说得快一点"),
)


@dataclass(frozen=True)
class Preset:
    """One entry of the instruction picker."""

    key: str
    label: str
    instruction: str
    feature: str
    allowed: bool


def presets_for_tenant(*, tenant: Tenant) -> dict[str, list[Preset]]:
    plan = tenant.plan
    dialects = [
        Preset(
            key=key,
            label=f"{english} · {zh}",
            instruction=f"用{zh}说这句话",
            feature="dialect",
            allowed=plan.allows_feature("dialect"),
        )
        for key, (zh, english, _, _) in DIALECTS.items()
    ]
    emotions = [
        Preset(key=k, label=label, instruction=text, feature="emotion", allowed=plan.allows_feature("emotion"))
        for k, label, text in EMOTION_PRESETS
    ]
    styles = [
        Preset(key=k, label=label, instruction=text, feature="style", allowed=plan.allows_feature("style"))
        for k, label, text in STYLE_PRESETS
    ]
    return {"Dialects": dialects, "Emotions": emotions, "Styles": styles}


def quote_get(*, tenant: Tenant, text: str, instruction: str = "") -> dict:
    """Tokens the request would cost and the errors the API would raise, per field.

    The language is what the API will use: the dialect's language if the instruction names
    one (Cantonese), else the language the text is written in.
    """
    from billing.services import plan_feature_check

    errors: dict[str, str] = {}
    clean_text = normalize_text(text or "")
    clean_instruction = normalize_text(instruction or "")
    try:
        validated = validate_request_text(text or "", instruction or None)
        clean_text, clean_instruction = validated.text, validated.instruction or ""
    except VoxfleetError as exc:
        errors["instruction" if "instruction" in exc.code else "text"] = exc.message
    features: set[str] = set()
    language = detect_language(clean_text) if clean_text else "zh"
    parsed = parse_instruction(clean_instruction) if clean_instruction else None
    if parsed is not None:
        features = set(parsed.required_features)
        if parsed.language:
            language = parsed.language
    try:
        plan_feature_check(tenant=tenant, language=language, features=features)
    except VoxfleetError as exc:
        field = "text" if str(exc.extra.get("feature", "")).startswith("language:") else "instruction"
        errors.setdefault(field, exc.message)
    return {
        "tokens": count_tokens(clean_text, clean_instruction),
        "text_tokens": count_tokens(clean_text),
        "instruction_tokens": count_tokens(clean_instruction) if clean_instruction else 0,
        "chars": len(clean_text),
        "text_limit": TEXT_MAX_CHARS,
        "instruction_chars": len(clean_instruction),
        "instruction_limit": INSTRUCTION_MAX_CHARS,
        "features": sorted(features),
        "language": language,
        "language_name": dict(LANGUAGES).get(language, language),
        "errors": errors,
    }
