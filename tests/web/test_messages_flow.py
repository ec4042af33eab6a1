"""The messages people expect, in a real browser: the agent quotes the visitor's message, the
visitor edits it and the agent sees the edit, both react to each other's messages, the visitor
sees quick-reply buttons from the agent and presses one, and the agent sees "seen"."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.live import LiveServer
from tests.web.conftest import Guard, login_agent, new_agent, new_page, shot, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("web-messages"), demo_knowledge=False)
    yield srv
    srv.stop()


def test_edit_react_and_reply_are_seen_on_the_other_side(server: LiveServer, browser: Any, tmp_path: Path) -> None:
    guard = Guard()
    _agent_id, _token, email = new_agent(server, "Nora")
    visitor = new_page(browser, guard)
    visitor.goto(server.url + "/")
    visitor.locator(".pw-launcher").click()
    visitor.wait_for_function("() => window.__parley.state().connected")
    visitor.locator(".pw-input").fill("My order is late")
    visitor.locator(".pw-input").press("Enter")
    mine = visitor.locator(".pw-msg.pw-mine[data-seq]").filter(has_text="My order is late")
    mine.wait_for()
    visitor.locator("[data-testid=human]").click()
    visitor.locator("[data-testid=queue]").wait_for()

    agent = new_page(browser, guard)
    login_agent(agent, server, email)
    agent.locator("#mine [data-testid=conv]").first.click()
    theirs = agent.locator(".msg-user").filter(has_text="My order is late")
    theirs.wait_for()

    # The agent quotes the visitor's message in a reply, with two quick-reply buttons.
    theirs.hover()
    theirs.locator("[data-testid=reply-to]").click()
    agent.locator("[data-testid=replybar]").wait_for()
    agent.locator("[data-testid=reply]").fill("Sorry about that! Shall I check it for you?")
    agent.locator("[data-testid=quick-input]").fill("Yes please, No thanks")
    agent.locator("[data-testid=send]").click()
    answer = visitor.locator(".pw-msg.pw-agent[data-seq]").filter(has_text="Shall I check it")
    answer.wait_for()
    assert "My order is late" in answer.locator("[data-testid=quote]").inner_text()

    # The visitor edits their message; the agent sees the new text, marked edited.
    mine.hover()
    mine.locator("[data-testid=edit]").click()
    visitor.locator(".pw-input").fill("My order 1234 is late")
    visitor.locator(".pw-input").press("Enter")
    edited = agent.locator(".msg-user").filter(has_text="My order 1234 is late")
    edited.locator("[data-testid=edited]").wait_for()
    # ... and the quote in the agent's reply follows
    agent.locator(".msg-agent [data-testid=quote]").filter(has_text="My order 1234 is late").wait_for()

    # Each reacts to the other's message.
    edited.hover()
    edited.locator("[data-testid=react]").click()
    edited.locator("[data-testid=emoji]").first.click()
    visitor.locator(".pw-msg.pw-mine[data-seq] [data-testid=reaction]").filter(has_text="👍 1").wait_for()
    answer.hover()
    answer.locator("[data-testid=react]").click()
    answer.locator("[data-testid=emoji]", has_text="🎉").click()
    agent.locator(".msg-agent [data-testid=reaction]").filter(has_text="🎉 1").wait_for()

    # The visitor presses a quick reply: it is their message; the agent sees it, and "seen".
    answer.locator("[data-testid=quick-reply]", has_text="Yes please").click()
    agent.locator(".msg-user").filter(has_text="Yes please").wait_for()
    agent.locator(".msg-agent .read").filter(has_text="Seen by the visitor").wait_for()
    shot(agent, "agent-console-messages.png", tmp_path)
    shot(visitor, "widget-messages.png", tmp_path)
    guard.check()
    visitor.context.close()
    agent.context.close()
