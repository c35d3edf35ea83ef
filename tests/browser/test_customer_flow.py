"""End to end in headless Chromium: sign up, synthesize, the plan gate, upgrade, invoice PDF."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

SYNTH_TIMEOUT_MS = 90_000


def _tokens_left(page) -> int:
    return int(page.locator("#tokens-left").get_attribute("data-remaining"))


def _counter_settles(page, expected_text: str) -> int:
    """Wait for the live counter to answer for the current text, and return its count."""
    page.wait_for_function(
        "(t) => { const el = document.getElementById('token-count'); return el.dataset.tokens !== undefined"
        " && document.getElementById('char-count').textContent === String(t.length); }",
        arg=expected_text,
    )
    return int(page.locator("#token-count").get_attribute("data-tokens"))


UNLABELLED_JS = """() => [...document.querySelectorAll('input, select, textarea, button')]
  .filter((el) => el.type !== 'hidden' && el.offsetParent !== null)
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !(el.textContent || '').trim())
  .map((el) => el.id || el.name || el.outerHTML.slice(0, 60))"""


def _assert_labelled(page) -> None:
    """Every visible control has a label, an aria-label or visible text (keyboard/screen-reader use)."""
    missing = page.evaluate(UNLABELLED_JS)
    assert missing == [], missing


def _generate_and_wait(page) -> None:
    page.click("#generate")
    page.wait_for_function(
        "() => !document.getElementById('result').hidden || document.getElementById('form-error').textContent"
        " || [...document.querySelectorAll('.field-error')].some(e => e.textContent)",
        timeout=SYNTH_TIMEOUT_MS,
    )
    form_error = page.locator("#form-error").text_content()
    assert not form_error, form_error
    expect(page.locator("#result")).to_be_visible()
    # The player got the job's streaming URL while the job was still open (it plays as it
    # streams in), and the page marks the stream finished when the job is.
    assert page.evaluate("document.getElementById('result-audio').getAttribute('src')").endswith("/audio?format=mp3")
    page.wait_for_function(
        "() => document.getElementById('result').dataset.streaming === undefined", timeout=SYNTH_TIMEOUT_MS
    )
    assert not page.locator("#form-error").text_content()


def _audio_duration(page) -> float:
    page.wait_for_function(
        "() => { const a = document.getElementById('result-audio'); return a.readyState >= 1 && a.duration > 0; }",
        timeout=30_000,
    )
    return page.evaluate("document.getElementById('result-audio').duration")


def test_signup_synthesize_gate_upgrade_invoice(browser_page, server, screenshot_dir):
    page = browser_page
    suffix = uuid.uuid4().hex[:6]

    # Sign up: a new tenant on the Free plan, logged in on the dashboard.
    page.goto("/signup/")
    _assert_labelled(page)
    page.fill("#id_organisation", f"Browser Test Studio {suffix}")
    page.fill("#id_username", f"browser{suffix}")
    page.fill("#id_email", f"browser{suffix}@example.com")
    page.fill("#id_password1", "a-long-passphrase-42")
    page.fill("#id_password2", "a-long-passphrase-42")
    page.click("button[type=submit]")
    expect(page.locator("#plan-name")).to_have_text("Free")
    assert _tokens_left(page) == 500

    # Synthesize in the playground with a preset voice.
    page.goto("/playground/")
    _assert_labelled(page)
    text = "你好，欢迎使用语音合成服务。"
    page.fill("#text", text)
    shown = _counter_settles(page, text)
    assert shown == 12
    before = _tokens_left(page)
    page.select_option("#voice", "zh-female")
    page.fill("#seed", "")
    # Keyboard use: the dice is a real button, reachable and pressable without a mouse.
    page.focus("#dice")
    page.keyboard.press("Enter")
    assert 1 <= int(page.input_value("#seed")) <= 100_000_000
    _generate_and_wait(page)
    assert _audio_duration(page) > 0.5
    # Tokens left drop by exactly the count the counter showed.
    page.wait_for_function(
        f"() => Number(document.getElementById('tokens-left').dataset.remaining) === {before - shown}"
    )
    assert _tokens_left(page) == before - shown
    expect(page.locator("#download")).to_have_attribute("href", re.compile(r"/api/v1/jobs/\d+/audio"))

    # A dialect is blocked on Free: the preset is disabled with an upgrade hint, and typing
    # one is refused inline with the API's own message.
    sichuan = page.locator('#instruction-preset option[data-key="sichuan"]')
    expect(sichuan).to_be_disabled()
    expect(page.locator("#preset-hint")).to_contain_text("Upgrade to Pro")
    page.fill("#instruction", "用四川话说这句话")
    expect(page.locator("#instruction-error")).to_contain_text("not included in the Free plan")
    page.click("#generate")
    expect(page.locator("#instruction-error")).to_contain_text("Free plan", timeout=15_000)
    assert _tokens_left(page) == before - shown

    # Upgrade to Pro: takes effect at once.
    page.goto("/plan/")
    expect(page.locator("#upgrade-pro")).to_be_visible()
    page.click("#upgrade-pro")
    expect(page.locator(".messages")).to_contain_text("You are now on the Pro plan")
    expect(page.locator("#current-plan")).to_have_text("Pro")

    # The dialect now works.
    page.goto("/playground/")
    expect(page.locator('#instruction-preset option[data-key="sichuan"]')).to_be_enabled()
    page.fill("#text", "今天天气很好。")
    page.select_option("#instruction-preset", value="用四川话说这句话")
    expect(page.locator("#instruction")).to_have_value("用四川话说这句话")
    _counter_settles(page, "今天天气很好。")
    assert page.locator("#instruction-error").text_content() == ""
    _generate_and_wait(page)
    assert _audio_duration(page) > 0.3
    page.screenshot(path=str(screenshot_dir / "playground.png"), full_page=True)

    # The invoice carries the prorated upgrade; its PDF downloads.
    page.goto("/invoices/")
    link = page.locator("a", has_text="PDF").first
    expect(link).to_be_visible()
    with page.expect_download() as dl:
        link.click()
    pdf = dl.value
    data = open(pdf.path(), "rb").read()
    assert data.startswith(b"%PDF") and len(data) > 500
    assert pdf.suggested_filename.endswith(".pdf")

    # The dashboard shows both jobs with their audio and the usage charts.
    page.goto("/")
    expect(page.locator("#fig_per_day + script, [data-figure=fig_per_day]").first).to_be_attached()
    page.wait_for_selector("[data-figure=fig_per_day][data-rendered='1']", timeout=20_000)
    assert page.locator("table audio").count() >= 2
    page.screenshot(path=str(screenshot_dir / "dashboard.png"), full_page=True)

    # Responsive: on a phone-sized screen nothing scrolls sideways except inside tables.
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/", "/playground/", "/plan/"):
        page.goto(path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, (path, overflow)
    page.goto("/")
    page.screenshot(path=str(screenshot_dir / "dashboard_mobile.png"), full_page=True)
    assert not page.js_errors, page.js_errors
