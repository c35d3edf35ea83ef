"""The playground's live counter uses billing's count_tokens and the API's validation."""

from __future__ import annotations

import pytest

from billing.metering import count_tokens

CASES = [
    ("她的爱好[h][ào]", "", 6),
    ("她爱好干净", "", 5),
    ("Hello, world!", "", 2),
    ("你好", "用四川话说这句话", 10),
    ("I don't know 3.14 [laughter]", "", 5),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("text", "instruction", "expected"), CASES)
def test_quote_counts_like_billing(make_tenant, client, text, instruction, expected):
    tenant = make_tenant("pro")
    client.force_login(tenant.test_owner)
    data = client.get("/playground/quote", {"text": text, "instruction": instruction}).json()
    assert data["tokens"] == expected == count_tokens(text, instruction)
    assert data["errors"] == {}


@pytest.mark.django_db
def test_quote_shows_the_api_errors_inline(owner_client):
    data = owner_client.get("/playground/quote", {"text": "好" * 201}).json()
    assert "too long" in data["errors"]["text"]
    data = owner_client.get("/playground/quote", {"text": "你好", "instruction": "用四川话说这句话"}).json()
    assert "Dialect" in data["errors"]["instruction"] and "Free" in data["errors"]["instruction"]
    assert data["features"] == ["dialect"]
    data = owner_client.get("/playground/quote", {"text": "你好", "instruction": "x" * 101}).json()
    assert "Instruction is too long" in data["errors"]["instruction"]


@pytest.mark.django_db
def test_quote_needs_login(client):
    assert client.get("/playground/quote", {"text": "hi"}).status_code == 302
