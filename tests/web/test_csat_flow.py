"""CSAT in a real browser: the visitor rates the AI's answer from "Rate this chat", is asked again once a
person resolved the conversation and rates that too; the agent sees the rating in the console, and the
admin dashboard shows AI and human side by side with the comments."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.live import LiveServer
from tests.web.conftest import Guard, login_agent, new_agent, new_page, shot, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("web-csat"), demo_knowledge=False)
    yield srv
    srv.stop()


def rate(page: Any, stars: int, comment: str) -> None:
    page.locator(f"[data-testid=csat-star][data-score='{stars}']").click()
    page.locator("[data-testid=csat-comment]").fill(comment)
    page.locator("[data-testid=csat-send]").click()
    page.locator("[data-testid=csat-thanks]").wait_for()


def test_the_visitor_rates_the_ai_and_the_person_and_both_show(server: LiveServer, browser: Any,
                                                                 tmp_path: Path) -> None:
    guard = Guard()
    with server.admin() as admin:
        wording = {"question": "How did we do?", "thanks": "Thanks, noted!"}
        admin.put("/v1/csat/wording", json=wording).raise_for_status()
    _agent_id, _token, email = new_agent(server, "Rosa")
    visitor = new_page(browser, guard)
    visitor.goto(server.url + "/")
    visitor.locator(".pw-launcher").click()
    box = visitor.locator(".pw-input")
    box.fill("is there a warranty on the grinder")
    box.press("Enter")
    visitor.locator(".pw-msg.pw-bot[data-seq]").first.wait_for()

    # the AI answered: a quiet "Rate this chat" link, no card until asked
    assert visitor.locator("[data-testid=csat]").is_hidden()
    visitor.locator("[data-testid=csat-ask]").click()
    visitor.locator("[data-testid=csat]").wait_for()
    assert visitor.locator(".pw-csat-q").inner_text() == "How did we do?"
    assert visitor.locator("[data-testid=csat-send]").is_disabled()
    rate(visitor, 2, "the bot did not know")
    assert visitor.locator("[data-testid=csat-thanks]").inner_text() == "Thanks, noted!"
    assert visitor.locator("[data-testid=csat-ask]").is_hidden()

    # a person takes over and resolves: the card comes by itself
    visitor.locator("[data-testid=human]").click()
    agent = new_page(browser, guard)
    login_agent(agent, server, email)
    agent.locator("#mine [data-testid=conv]").first.click()
    agent.locator("[data-testid=reply]").fill("Two years on the grinder, parts and labour.")
    agent.locator("[data-testid=send]").click()
    visitor.locator(".pw-msg.pw-agent[data-seq]").first.wait_for()
    agent.locator("[data-testid=resolve]").click()
    visitor.locator("[data-testid=csat]").wait_for()
    shot(visitor, "widget-csat.png", tmp_path)
    rate(visitor, 5, "Rosa was quick")

    # the console shows the latest rating and whom it rated
    cid = agent.evaluate("window.__console.state().selected")
    agent.reload()
    agent.wait_for_selector("#conn.ok")
    agent.locator("[data-testid=find-status]").select_option("resolved")
    agent.locator(f"[data-testid=found-item][data-cid='{cid}']").click()
    rating = agent.locator("[data-testid=conv-rating]")
    rating.wait_for()
    assert "★★★★★" in rating.inner_text() and "a person" in rating.inner_text()
    assert "Rosa was quick" in rating.inner_text()

    # the admin dashboard: AI beside human, by agent, the comments
    admin = new_page(browser, guard)
    admin.goto(server.url + "/admin")
    admin.fill("[data-testid=admin-key]", server.admin_key)
    admin.click("#gate-form button[type=submit]")
    admin.wait_for_function("() => document.querySelector('[data-testid=csat-human]').textContent.includes('100%')")
    assert admin.locator("[data-testid=csat-human]").inner_text() == "100% satisfied · 5.00 / 5 · 1 ratings"
    assert admin.locator("[data-testid=csat-ai]").inner_text() == "0% satisfied · 2.00 / 5 · 1 ratings"
    assert "Rosa" in admin.locator("[data-testid=csat-agents]").inner_text()
    comments = admin.locator("[data-testid=csat-recent] [data-testid=csat-comment]").all_inner_texts()
    assert comments == ["5 ★ · human · Rosa was quick", "2 ★ · AI · the bot did not know"]
    shot(admin, "admin-csat.png", tmp_path)
    guard.check()
