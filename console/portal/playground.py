"""The playground's catalogue of instruction presets and the live quote.

The quote is the API's own ``inference.services.job_quote`` (text limits, instruction
parsing, the plan's feature gate, token counting), so what the page shows inline is what
the API would answer: one source of truth, no JavaScript port of the rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from inference.services import job_quote
from inference.text import INSTRUCTION_MAX_CHARS, LANGUAGE_NAMES, TEXT_MAX_CHARS
from inference.text.instruction import DIALECTS

if TYPE_CHECKING:
    from billing.models import Tenant

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
    """Tokens the request would cost and the errors the API would raise, per field."""
    quote = job_quote(tenant=tenant, text=text or "", instruction=instruction or None)
    return {
        "tokens": quote.tokens,
        "text_tokens": quote.text_tokens,
        "instruction_tokens": quote.instruction_tokens,
        "chars": len(quote.text),
        "text_limit": TEXT_MAX_CHARS,
        "instruction_chars": len(quote.instruction),
        "instruction_limit": INSTRUCTION_MAX_CHARS,
        "features": sorted(quote.features),
        "language": quote.language,
        "language_name": LANGUAGE_NAMES.get(quote.language, quote.language),
        "errors": quote.errors,
    }
