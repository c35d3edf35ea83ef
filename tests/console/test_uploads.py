"""Request bodies are capped while streaming (console.uploads): 413 JSON, nothing read past the cap."""

from __future__ import annotations

import asyncio
import io

import pytest
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.test import Client

from console.uploads import body_cap_asgi


def _auth(tenant):
    return {"HTTP_AUTHORIZATION": f"Bearer {tenant.test_api_key}"}


@pytest.mark.django_db
def test_declared_oversize_body_is_refused_unread(make_tenant, settings):
    tenant = make_tenant("pro")
    # 300 MB announced, a few bytes sent: the answer comes from the header alone.
    r = Client().generic(
        "POST", "/api/v1/voices", b"x" * 10, content_type="multipart/form-data; boundary=b", CONTENT_LENGTH="314572800"
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"
    r = Client().post(
        "/api/v1/jobs", b"x" * 10, content_type="application/json", CONTENT_LENGTH="314572800", **_auth(tenant)
    )
    assert r.status_code == 413


@pytest.mark.django_db
def test_uploaded_file_is_cut_off_while_it_streams(make_tenant, settings, monkeypatch):
    tenant = make_tenant("pro")
    settings.UPLOAD_FILE_MAX_BYTES = 200_000
    stored = {"bytes": 0}
    real = TemporaryFileUploadHandler.receive_data_chunk

    def counting(self, raw_data, start):
        stored["bytes"] += len(raw_data)
        return real(self, raw_data, start)

    # Over FILE_UPLOAD_MAX_MEMORY_SIZE, so the memory handler passes every chunk on to the temp file.
    monkeypatch.setattr(TemporaryFileUploadHandler, "receive_data_chunk", counting)
    big = io.BytesIO(b"RIFF" + b"\0" * 3_000_000)
    big.name = "big.wav"
    r = Client().post("/api/v1/voices", {"name": "Big", "audio": big}, **_auth(tenant))
    assert r.status_code == 413, r.content
    assert r.json()["error"]["code"] == "request_too_large"
    assert 0 < stored["bytes"] <= 200_000  # streamed to the cap, nothing past it kept


@pytest.mark.django_db
def test_portal_voice_upload_is_capped_too(make_tenant, settings):
    tenant = make_tenant("pro")
    settings.UPLOAD_FILE_MAX_BYTES = 100_000
    c = Client()
    c.force_login(tenant.test_owner)
    big = io.BytesIO(b"\0" * 500_000)
    big.name = "big.wav"
    r = c.post("/voices/", {"name": "Big", "audio": big})
    assert r.status_code == 413


def test_chunked_asgi_body_is_cut_off_at_the_cap(settings):
    settings.REQUEST_BODY_MAX_BYTES = 10_000
    chunks = [{"type": "http.request", "body": b"x" * 4_000, "more_body": True} for _ in range(100)]
    pulled = {"n": 0}
    sent = []
    seen_by_app = []

    async def receive():
        pulled["n"] += 1
        return chunks[pulled["n"] - 1]

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):
        while True:
            message = await receive()
            seen_by_app.append(message["type"])
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                return
        await send({"type": "http.response.start", "status": 200, "headers": []})

    scope = {"type": "http", "headers": [(b"transfer-encoding", b"chunked")]}
    asyncio.run(body_cap_asgi(app)(scope, receive, send))
    assert sent[0]["status"] == 413
    assert pulled["n"] == 3  # 12,000 bytes read, then it stopped; the other 97 chunks never were
    assert seen_by_app[-1] == "http.disconnect"


def test_declared_oversize_asgi_body_is_refused_before_the_app_runs(settings):
    settings.REQUEST_BODY_MAX_BYTES = 10_000
    sent = []

    async def receive():
        raise AssertionError("the body was read")

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):
        raise AssertionError("the app ran")

    scope = {"type": "http", "headers": [(b"content-length", b"314572800")]}
    asyncio.run(body_cap_asgi(app)(scope, receive, send))
    assert sent[0]["status"] == 413 and b"request_too_large" in sent[1]["body"]
