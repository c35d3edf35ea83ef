"""The playground's voice cloning: microphone recording to WAV, and prompt-audio upload used for synthesis."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.inference.speech_samples import encode, speech

pytestmark = pytest.mark.browser


def _login(page, user: dict) -> None:
    page.goto("/accounts/login/")
    page.fill("#id_username", user["username"])
    page.fill("#id_password", user["password"])
    page.click("button[type=submit]")
    expect(page.locator("#plan-name")).to_be_visible()


def test_record_and_upload_prompt_audio_then_synthesize(browser_page, server, tmp_path):
    page = browser_page
    pro = next(t for t in server["demo"]["tenants"] if t["username"] == "pro")
    _login(page, pro)
    page.goto("/playground/")
    page.select_option("#voice", "__new__")
    expect(page.locator("#new-voice")).to_be_visible()

    # Microphone: Chromium's fake capture device stands in for a real one; the page turns
    # MediaRecorder's webm/opus into a WAV it can upload.
    page.click("#record")
    expect(page.locator("#record")).to_have_attribute("aria-pressed", "true")
    page.wait_for_timeout(1500)
    page.click("#record")
    expect(page.locator("#record-status")).to_contain_text("Recorded", timeout=15_000)
    expect(page.locator("#prompt-preview")).to_be_visible()
    wav_head = page.evaluate(
        "async () => { const r = await fetch(document.getElementById('prompt-preview').src);"
        " const b = new Uint8Array(await r.arrayBuffer()); return String.fromCharCode(...b.slice(0, 4)); }"
    )
    assert wav_head == "RIFF"

    # Upload 6 s of real speech instead, clone it and speak with it.
    s = speech(6.0)
    prompt = tmp_path / "prompt.wav"
    prompt.write_bytes(encode(s.samples[: int(6.0 * s.sample_rate)], s.sample_rate))
    page.set_input_files("#prompt-audio", str(prompt))
    page.fill("#voice-name", "Browser clone")
    page.fill("#text", "这是克隆的声音。")
    page.click("#generate")
    page.wait_for_function(
        "() => !document.getElementById('result').hidden || document.getElementById('form-error').textContent"
        " || [...document.querySelectorAll('.field-error')].some(e => e.textContent)",
        timeout=90_000,
    )
    errors = page.evaluate(
        "[...document.querySelectorAll('.field-error, #form-error')].map(e => e.textContent).join(' ')"
    )
    assert not errors.strip(), errors
    expect(page.locator("#own-voices option", has_text="Browser clone")).to_have_count(1)
    page.wait_for_function(
        "() => { const a = document.getElementById('result-audio'); return a.readyState >= 1 && a.duration > 0.3; }",
        timeout=30_000,
    )
    assert not page.js_errors, page.js_errors
