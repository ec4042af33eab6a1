"""Browser tests: Debian's Chromium driven by Playwright (Python). One live server per module.

Chromium is expected at /usr/bin/chromium (``apt-get install chromium``); without it, or without
the ``playwright`` package, the tests skip with the reason shown, and fail under CI=true."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.conftest import need
from tests.support.live import ROOT, LiveServer, free_port

CHROMIUM = os.environ.get("PARLEY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
DOCS = ROOT / "docs"
#: Set PARLEY_SCREENSHOTS=1 to refresh docs/*.png; otherwise screenshots go to the test's tmp dir.
SCREENSHOTS = os.environ.get("PARLEY_SCREENSHOTS") == "1"

try:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Route, sync_playwright
except ImportError:  # pragma: no cover - reported by the fixture
    sync_playwright = None  # type: ignore[assignment]


@pytest.fixture(scope="module")
def pw() -> Iterator["Playwright"]:
    need("Playwright", sync_playwright is not None, "pip install playwright")
    need("Chromium", Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(pw: "Playwright") -> Iterator["Browser"]:
    b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield b
    b.close()


def start_server(tmp: Path, *, demo_knowledge: bool) -> LiveServer:
    # the push stub's endpoint host (test_chat_flow.PUSH_STUB) is trusted like a push service
    env = {"PARLEY_DEMO_KNOWLEDGE": "true" if demo_knowledge else "false",
           "PARLEY_PUSH__EGRESS_HOSTS": '["push.invalid"]',
           # The XSS suite posts its payloads over REST in a burst; flood limits have their own tests.
           "PARLEY_RATE_PER_USER": "1000", "PARLEY_BURST_PER_USER": "1000",
           "PARLEY_RATE_PER_TENANT": "1000", "PARLEY_BURST_PER_TENANT": "1000"}
    return LiveServer("uvicorn", free_port(), tmp, env).start(timeout=180)


class Guard:
    """Records what must never happen in a page: dialogs, requests leaving 127.0.0.1, page errors."""

    def __init__(self) -> None:
        self.dialogs: list[str] = []
        self.external: list[str] = []
        self.errors: list[str] = []

    def attach(self, ctx: "BrowserContext") -> None:
        def route(r: "Route") -> None:
            host = urlparse(r.request.url).hostname
            if r.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
                r.continue_()
            else:
                self.external.append(r.request.url)
                r.abort()

        ctx.route("**/*", route)

    def watch(self, page: "Page") -> "Page":
        def on_dialog(d: Any) -> None:
            self.dialogs.append(f"{d.type}: {d.message}")
            d.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        return page

    def check(self) -> None:
        assert not self.dialogs, f"a dialog fired: {self.dialogs}"
        assert not self.external, f"requests left 127.0.0.1: {self.external}"
        assert not self.errors, f"page errors: {self.errors}"


def new_page(browser: "Browser", guard: Guard) -> "Page":
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.set_default_timeout(20_000)
    guard.attach(ctx)
    return guard.watch(ctx.new_page())


def login_agent(page: "Page", server: LiveServer, email: str, password: str = "correct horse battery") -> None:
    page.goto(server.url + "/agent")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#conn.ok")


def new_agent(server: LiveServer, name: str) -> tuple[str, str, str]:
    """(agent_id, token, email)"""
    email = f"{name.lower()}-{uuid.uuid4().hex[:6]}@example.com"
    agent_id, token = server.agent(name, email)
    return agent_id, token, email


def shot(page: "Page", name: str, tmp: Path) -> Path:
    path = (DOCS if SCREENSHOTS else tmp) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    return path
