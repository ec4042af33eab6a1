"""Two-factor sign-in in the agent console, in a real browser: a tenant that requires it sends an agent
without one to enrolment (the key shown, a first code turns it on, recovery codes shown once), the next
code signs them in, and a later sign-in asks for the code after the password."""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest

from tests.support.live import LiveServer
from tests.web.conftest import Guard, new_agent, new_page, shot, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("web-mfa"), demo_knowledge=False)
    srv.without_bot()
    yield srv
    srv.stop()


def sign_in(page: Any, server: LiveServer, email: str) -> None:
    page.goto(server.url + "/agent")
    page.fill("#email", email)
    page.fill("#password", "correct horse battery")
    page.click("#login-form button[type=submit]")


def test_enrolment_is_asked_for_and_the_code_signs_in(server: LiveServer, browser: Any, tmp_path: Path) -> None:
    guard = Guard()
    _agent_id, _token, email = new_agent(server, "Tova")
    with server.admin() as admin:
        admin.put("/v1/tenant/mfa", json={"required": True}).raise_for_status()
    page = new_page(browser, guard)
    sign_in(page, server, email)
    page.locator("[data-testid=mfa-enrol]").wait_for()
    assert "two-factor" in page.locator("#login-error").inner_text()
    secret = page.locator("[data-testid=mfa-secret]").inner_text()
    assert page.locator("[data-testid=mfa-uri]").get_attribute("href", timeout=5000).startswith("otpauth://totp/")
    totp = pyotp.TOTP(secret)
    page.fill("[data-testid=mfa-code]", "000000" if totp.now() != "000000" else "111111")
    page.click("[data-testid=mfa-confirm]")
    page.wait_for_function("() => document.querySelector('#login-error').textContent.length > 0")
    assert page.locator("[data-testid=mfa-codes]").is_hidden()
    page.fill("[data-testid=mfa-code]", totp.now())
    page.click("[data-testid=mfa-confirm]")
    page.locator("[data-testid=mfa-codes]").wait_for()
    codes = page.locator("#mfa-code-list li").all_inner_texts()
    assert len(codes) == 10
    shot(page, "console-mfa.png", tmp_path)
    page.fill("[data-testid=otp]", totp.at(time.time() + 30))  # the next step: the first one is spent
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#conn.ok")

    # signed out, the password alone asks for the code; a recovery code does instead
    page.click("#logout")
    sign_in(page, server, email)
    page.locator("#otp-row").wait_for()
    page.fill("[data-testid=otp]", codes[0])
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#conn.ok")
    guard.check()
