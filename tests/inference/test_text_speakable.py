"""Text with nothing to speak (only punctuation, symbols, emoji) is refused by the text front
end with its own error, never metered as 0 tokens (billing's internal error)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.metering import count_tokens
from inference.text import TextInvalid
from inference.text.normalize import validate_request_text


@pytest.mark.parametrize("text", ["!!!", "……", "😀😀", "？！。", " - ", "[ ]", "___"])
def test_unspeakable_text_is_refused_with_its_own_code(text):
    with pytest.raises(TextInvalid) as info:
        validate_request_text(text)
    assert info.value.code in ("text_nothing_to_speak", "text_empty")
    assert "Tokens must be" not in info.value.message


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_text_that_passes_is_never_metered_as_zero(text):
    try:
        validated = validate_request_text(text)
    except TextInvalid:
        return
    assert count_tokens(validated.text) > 0


@pytest.mark.django_db
def test_api_refuses_emoji_only_input_with_a_clear_400(make_tenant):
    from django.test import Client

    tenant = make_tenant("pro")
    r = Client().post(
        "/api/v1/jobs",
        {"input": "😀!!", "voice": "zh-female"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {tenant.test_api_key}",
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "text_nothing_to_speak"
