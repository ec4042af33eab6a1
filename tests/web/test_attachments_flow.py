"""Attachments in a real browser: the visitor pastes a screenshot into the widget, the agent sees
its thumbnail in the console and answers with a file the visitor can download."""

import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.attachment_files import PDF, png
from tests.support.live import LiveServer
from tests.web.conftest import Guard, login_agent, new_agent, new_page, shot, start_server

pytestmark = pytest.mark.slow

IN_WIDGET = "document.querySelector('#parley-widget').shadowRoot"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("web-files"), demo_knowledge=False)
    yield srv
    srv.stop()


def wait_until(cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_visitor_pastes_a_screenshot_and_the_agent_sees_the_thumbnail(server: LiveServer, browser: Any,
                                                                      tmp_path: Path) -> None:
    guard = Guard()
    _agent_id, _token, email = new_agent(server, "Mira")
    visitor = new_page(browser, guard)
    visitor.goto(server.url + "/")
    visitor.locator(".pw-launcher").click()
    visitor.wait_for_function("() => window.__parley.state().connected")

    # A paste carrying an image file, as the browser makes it from a screenshot in the clipboard.
    shot_b64 = base64.b64encode(png(900, 600, (220, 40, 40, 255))).decode()
    visitor.evaluate(f"""(b64) => {{
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "image.png", {{ type: "image/png" }}));
        const input = {IN_WIDGET}.querySelector('.pw-input');
        input.dispatchEvent(new ClipboardEvent('paste', {{ clipboardData: dt, bubbles: true, cancelable: true }}));
    }}""", shot_b64)
    mine = visitor.locator(".pw-msg.pw-mine[data-seq] [data-testid=thumb]").first
    mine.wait_for()
    visitor.wait_for_function(f"() => {{ const i = {IN_WIDGET}.querySelector('.pw-msg[data-seq] img.pw-thumb');"
                              " return i && i.complete && i.naturalWidth > 0; }")
    width = visitor.evaluate(f"() => {IN_WIDGET}.querySelector('.pw-msg[data-seq] img.pw-thumb').naturalWidth")
    assert 0 < width <= 320  # the thumbnail, not the 900 px original
    visitor.locator("[data-testid=human]").click()
    visitor.locator("[data-testid=queue]").wait_for()

    agent = new_page(browser, guard)
    login_agent(agent, server, email)
    # An agent who comes online is given the waiting conversation: it opens from their own list.
    agent.locator("#mine [data-testid=conv]").first.click()
    agent.locator(".msg-user [data-testid=thumb]").first.wait_for()
    agent.wait_for_function("() => { const i = document.querySelector('.msg-user img.thumb');"
                            " return i && i.complete && i.naturalWidth > 0"
                            " && (i.getAttribute('src') || '').startsWith('blob:'); }")
    # (checked in one step: the console re-renders the thread on subscribe, so a second lookup may find
    # the new element before its authorised blob is set)
    assert agent.locator("[data-testid=conv-status]").inner_text() == "assigned to you"

    # The agent answers with a PDF through the attach button; the visitor gets a download button.
    pdf = tmp_path / "steps.pdf"
    pdf.write_bytes(PDF)
    agent.locator("[data-testid=file]").set_input_files(str(pdf))
    agent.locator("[data-testid=staged] .chip").wait_for()
    agent.locator("[data-testid=reply]").fill("Here are the steps.")
    agent.locator("[data-testid=send]").click()
    agent.locator(".msg-agent [data-testid=file-link]").wait_for()
    shot(agent, "agent-console-attachments.png", tmp_path)
    link = visitor.locator(".pw-msg.pw-agent[data-seq] [data-testid=file-link]").first
    link.wait_for()
    assert "steps.pdf" in link.inner_text()
    with visitor.expect_download() as dl:
        link.click()
    saved = tmp_path / "got.pdf"
    dl.value.save_as(str(saved))
    assert saved.read_bytes() == PDF
    shot(visitor, "widget-attachments.png", tmp_path)
    guard.check()
    visitor.context.close()
    agent.context.close()
