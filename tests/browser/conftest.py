"""A real Voxfleet server for browser tests, and headless Debian Chromium driven by Playwright.

The server is one ``uvicorn console.asgi:application`` process on the embedded default (no
REDIS_URL: the job executor and the local node's agent run inside it) against its own
SQLite file, migrated and seeded with ``seed_demo``, whatever database the rest of the
suite uses (``tests.support.live_server.embedded_server_start``). Chromium is the
distribution's binary, never one Playwright downloads, with the flags that keep it off the
network.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.live_server import ROOT, embedded_server_start

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
    # A fake microphone (a tone), granted without a prompt: the playground's recorder is testable.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """Base URL, demo logins and log path of a live embedded server (session-wide)."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install -r requirements-dev.txt)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    tmp = tmp_path_factory.mktemp("browser-server")
    live = embedded_server_start(tmp, extra_env={"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"})
    try:
        yield {
            "base": live.url,
            "demo": live.data,
            "log": tmp / "server.log",
            "outputs": tmp / "outputs",
            # The server's environment (its database, var and outputs dirs): for manage.py commands.
            "env": live.env,
        }
    finally:
        live.stop()


# Package scope, not session: Playwright's sync API keeps its event loop marked as running in
# the main thread while it lives, and the async and sync tests after tests/browser would see it.
@pytest.fixture(scope="package")
def playwright_instance(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture
def browser_page(playwright_instance, server, tmp_path):
    """A page in a fresh headless Chromium profile (its own user-data dir, downloads allowed)."""
    profile = tmp_path / "chromium-profile"
    context = playwright_instance.chromium.launch_persistent_context(
        str(profile),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        accept_downloads=True,
        base_url=server["base"],
        viewport={"width": 1280, "height": 900},
    )
    context.set_default_timeout(20_000)
    page = context.pages[0] if context.pages else context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    try:
        yield page
    finally:
        context.close()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def screenshot_dir():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
