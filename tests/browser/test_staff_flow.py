"""End to end in headless Chromium: staff overview, the live fleet view and a node restart."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_staff_sees_overview_and_restarts_the_live_node(browser_page, server, screenshot_dir):
    page = browser_page
    admin = server["demo"]["admin"]
    node = server["demo"]["nodes"][0]["name"]

    page.goto("/accounts/login/")
    page.fill("#id_username", admin["username"])
    page.fill("#id_password", admin["password"])
    page.click("button[type=submit]")
    page.wait_for_url("**/staff/")
    expect(page.locator("h1")).to_have_text("Staff overview")
    expect(page.locator("#tenant-table")).to_contain_text("Pearl Pro Media")
    page.wait_for_selector("[data-figure=fig_period][data-rendered='1']", timeout=20_000)
    page.screenshot(path=str(screenshot_dir / "staff_overview.png"), full_page=True)

    # The fleet dashboard shows the in-process node live (its agent streams over the websocket).
    page.click("#ops-link")
    page.wait_for_url("**/ops/")
    card = page.locator(f'#node-table tr[data-node="{node}"]')
    expect(card.locator("[data-testid=state]")).to_have_text("online", timeout=30_000)

    page.click(f'button[data-action="restart"][data-node="{node}"]')
    expect(page.locator("#confirm-action")).to_be_visible()
    page.click("#confirm-ok")
    expect(page.locator("#action-result")).to_contain_text("restart sent", timeout=10_000)
    # The agent acknowledges over the websocket: the card shows the restart succeeded (with
    # VRAM before/after) and the node is back online; the audit log has the row on reload.
    last = card.locator(".last-action")
    expect(last).to_contain_text("restart", timeout=60_000)
    expect(last.locator("strong")).to_have_text("succeeded", timeout=60_000)
    expect(card.locator("[data-testid=state]")).to_have_text("online", timeout=60_000)
    page.reload()
    expect(page.locator("#audit-log")).to_contain_text("restart")
    expect(page.locator("#audit-log")).to_contain_text(admin["username"])
    page.screenshot(path=str(screenshot_dir / "ops_restart.png"), full_page=True)
    assert not page.js_errors, page.js_errors
