"""A node's strings are shown as text: markup from a hostile node runs nowhere, in a real browser."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
from playwright.sync_api import expect
from websockets.sync.client import connect

from tests.support.live_server import ROOT

pytestmark = pytest.mark.browser

XSS = '<img src=x onerror="window.__pwned=1">'


def _register(server, name: str) -> str:
    out = subprocess.run(
        [sys.executable, "manage.py", "node_create", name, "--json"],
        cwd=ROOT,
        env=server["env"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(out.stdout)[0]["token"]


class HostileAgent(threading.Thread):
    """Says hello with markup in every string it may send, streams a sample, and one bad frame."""

    def __init__(self, base: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url = base.replace("http", "ws") + "/ws/agent/"
        self.token = token
        self.stop = threading.Event()
        self.errors: list[str] = []

    def frame(self, kind: str, **fields) -> str:
        return json.dumps({"type": kind, "v": 2, **fields})

    def run(self) -> None:
        gpu = {"index": 0, "utilization": 50.0, "vram_used_mb": 100.0, "vram_total_mb": 1000.0, "temperature_c": 50.0}
        with connect(self.url, additional_headers={"Authorization": f"Bearer {self.token}"}) as ws:
            ws.send(
                self.frame(
                    "hello",
                    hostname=XSS,
                    gpu_model=XSS,
                    engine=XSS,
                    agent_version="<b>9</b>",
                    nvml=True,
                    gpus=[{"index": 0, "name": XSS, "uuid": XSS}],
                )
            )
            ws.recv()
            ws.send(self.frame("sample", seq=0, ts=time.time(), gpus=[{**gpu, "index": XSS}], node={}))
            self.errors.append(ws.recv())  # the refusal
            seq = 0
            while not self.stop.is_set():
                seq += 1
                ws.send(self.frame("sample", seq=seq, ts=time.time(), gpus=[gpu], node={"jobs_running": 0}))
                self.stop.wait(0.5)


def _login(page, server):
    admin = server["demo"]["admin"]
    page.goto("/accounts/login/")
    page.fill("#id_username", admin["username"])
    page.fill("#id_password", admin["password"])
    page.click("button[type=submit]")
    page.wait_for_url("**/staff/")


def test_hostile_strings_are_shown_as_text_on_the_fleet_and_node_pages(browser_page, server, screenshot_dir):
    page = browser_page
    token = _register(server, "hostile-x")
    agent = HostileAgent(server["base"], token)
    agent.start()
    try:
        _login(page, server)
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
