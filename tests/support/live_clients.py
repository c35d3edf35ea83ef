"""Clients for a live server: the official ``openai`` SDK and plain HTTP for ``/api/v1``."""

from __future__ import annotations

import httpx
import openai


def client(live, key: str) -> openai.OpenAI:
    # No retries: a refused request must be seen (and counted) exactly once.
    return openai.OpenAI(api_key=key, base_url=f"{live.url}/v1", max_retries=0, timeout=60)


def rest(live, key: str, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(
        method, f"{live.url}/api/v1/{path}", headers={"Authorization": f"Bearer {key}"}, timeout=60, **kwargs
    )


def remaining(live, key: str) -> int:
    response = rest(live, key, "GET", "quota")
    assert response.status_code == 200, response.text
    return response.json()["remaining"]
