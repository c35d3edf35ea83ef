"""A node's strings are shown as text: markup from a hostile node runs nowhere, in a real browser."""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import StreamingAgent, node_register, staff_login

pytestmark = pytest.mark.browser

XSS = '<img src=x onerror="window.__pwned=1">'


class HostileAgent(StreamingAgent):
    """Says hello with markup in every string it may send, streams a sample, and one bad frame."""

    hello = {
        "hostname": XSS,
        "gpu_model": XSS,
        "engine": XSS,
        "agent_version": "<b>9</b>",
        "nvml": True,
        "gpus": [{"index": 0, "name": XSS, "uuid": XSS}],
    }

    def after_hello(self, ws) -> None:
        ws.send(self.frame("sample", seq=0, ts=time.time(), gpus=[{**self.reading(0), "index": XSS}], node={}))
        self.errors.append(ws.recv())  # the refusal


def test_hostile_strings_are_shown_as_text_on_the_fleet_and_node_pages(browser_page, server, screenshot_dir):
    page = browser_page
    token = node_register(server, "hostile-x")
    agent = HostileAgent(server["base"], token)
    agent.start()
    try:
        staff_login(page, server)
        page.goto("/ops/")
        page.fill("#filter-name", "hostile")
        row = page.locator('#node-table tr[data-node="hostile-x"]')
        expect(row.locator("[data-testid=state]")).to_have_text("online", timeout=30_000)
        expect(row).to_contain_text(XSS)  # the markup, as characters
        expect(row).to_contain_text("<b>9</b>")
        expect(row.locator(".col-refused")).to_have_text("1", timeout=10_000)
        assert page.locator("main img").count() == 0
        assert page.evaluate("window.__pwned") is None
        page.screenshot(path=str(screenshot_dir / "ops_hostile_fleet.png"), full_page=True)

        page.goto("/ops/nodes/hostile-x/")
        expect(page.locator("#fact-host")).to_have_text(XSS)
        expect(page.locator("#gpu-table")).to_contain_text(XSS, timeout=10_000)  # the GPU's name and UUID
        expect(page.locator("#fact-refused")).to_have_text("1")
        expect(page.locator("#fact-refusal")).to_contain_text("index must be a number")
        assert page.locator("main img").count() == 0
        assert page.evaluate("window.__pwned") is None
        assert not page.js_errors, page.js_errors
    finally:
        agent.stop.set()
        agent.join(timeout=10)
    assert json.loads(agent.errors[0])["code"] == "bad_frame"
