"""The desk's operations in a real browser: in the agent console, agent A writes a private note that
@mentions agent B; B's console shows the mention live and opens the conversation from it; A then
transfers the conversation to a team with a comment, and B (the team's online member) gets it. The
visitor's side never shows the note."""

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.live import LiveServer
from tests.web.conftest import Guard, login_agent, new_agent, new_page, shot, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("web-desk-ops"), demo_knowledge=False)
    srv.without_bot()
    yield srv
    srv.stop()


def test_a_note_mentions_a_colleague_who_sees_it_and_a_transfer_to_a_team(server: LiveServer, browser: Any,
                                                                          tmp_path: Path) -> None:
    guard = Guard()
    a_id, a_token, a_email = new_agent(server, "Ana")
    b_id, _b_token, b_email = new_agent(server, "Ben")
    with server.admin() as admin:
        team = admin.post("/v1/teams", json={"name": "Billing"}).json()["id"]
        admin.put(f"/v1/teams/{team}/agents/{b_id}").raise_for_status()
    visitor = server.token(f"visitor-{uuid.uuid4().hex[:6]}", name="Ada")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {visitor}"}, timeout=10) as c:
        conv = c.post("/v1/conversations", json={"text": "I was charged twice"}).json()["conversation"]["id"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {a_token}"}, timeout=10) as c:
        c.post(f"/v1/conversations/{conv}/claim").raise_for_status()

    page_a = new_page(browser, guard)
    login_agent(page_a, server, a_email)
    page_b = new_page(browser, guard)
    login_agent(page_b, server, b_email)
    assert page_b.locator("[data-testid=mention-count]").inner_text() == "0"

    # A writes a private note mentioning B
    page_a.locator(f"[data-testid=mine] [data-testid=conv][data-cid='{conv}']").click()
    page_a.locator("[data-testid=note-mode]").check()
    page_a.locator("[data-testid=reply]").fill("@ben can you check the double charge?")
    page_a.locator("[data-testid=send]").click()
    page_a.locator(".msg-note", has_text="can you check the double charge").wait_for()
    assert page_a.locator("[data-testid=reply]").input_value() == ""

    # B sees the mention live, and opens the conversation from it
    mention = page_b.locator("[data-testid=mentions] [data-testid=mention]", has_text="double charge")
    mention.wait_for()
    assert page_b.locator("[data-testid=mention-count]").inner_text() == "1"
    shot(page_b, "console-mention.png", tmp_path)
    mention.click()
    page_b.locator("[data-testid=log] .msg-note", has_text="can you check the double charge").wait_for()
    page_b.wait_for_function("() => document.querySelector('[data-testid=mention-count]').textContent === '0'")

    # A transfers it to the Billing team with a comment; B, its online member, gets it
    page_a.locator("[data-testid=transfer]").click()
    page_a.locator("[data-testid=transfer-to]").select_option(f"team:{team}")
    page_a.locator("[data-testid=transfer-comment]").fill("refund the second charge")
    shot(page_a, "console-transfer.png", tmp_path)
    page_a.locator("[data-testid=transfer-go]").click()
    page_b.locator(f"[data-testid=mine] [data-testid=conv][data-cid='{conv}']").wait_for()
    page_a.locator(".msg-note", has_text="refund the second charge").wait_for()
    assert page_a.locator(f"[data-testid=mine] [data-testid=conv][data-cid='{conv}']").count() == 0

    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {visitor}"}, timeout=10) as c:
        seen = c.get(f"/v1/conversations/{conv}/messages").json()["messages"]
    assert all("double charge" not in m["text"] and "refund the second" not in m["text"] for m in seen)
    assert any(m["text"] == "Ben joined the conversation" for m in seen)
    assert a_id
    guard.check()


def test_an_admin_adds_and_deletes_a_routing_rule_in_the_teams_page(server: LiveServer, browser: Any,
                                                                   tmp_path: Path) -> None:
    guard = Guard()
    with server.admin() as admin:
        team = admin.post("/v1/teams", json={"name": "Refunds"}).json()["id"]
    page = new_page(browser, guard)
    page.goto(server.url + "/admin")
    page.fill("[data-testid=admin-key]", server.admin_key)
    page.click("#gate-form button[type=submit]")
    page.click("#tabs button[data-tab=teams]")
    page.locator("[data-testid=r-team]").select_option(team)
    page.locator("[data-testid=r-keyword]").fill("refund")
    page.click("[data-testid=route-form] button[type=submit]")
    row = page.locator("[data-testid=routing-rules] [data-testid=routing-rule]", has_text="“refund”")
    row.wait_for()
    assert "Refunds" in row.inner_text()
    page.locator("[data-testid=r-kind]").select_option("attribute")
    page.locator("[data-testid=r-attribute]").fill("plan")
    page.locator("[data-testid=r-value]").fill("enterprise")
    page.click("[data-testid=route-form] button[type=submit]")
    page.locator("[data-testid=routing-rules] [data-testid=routing-rule]", has_text="plan = enterprise").wait_for()
    shot(page, "admin-routing.png", tmp_path)
    with server.admin() as admin:
        rules = admin.get("/v1/routing-rules").json()["routing_rules"]
    assert [(r["kind"], r["keyword"], r["attribute"], r["value"]) for r in rules if r["team_id"] == team] == [
        ("topic", "refund", None, None), ("attribute", None, "plan", "enterprise")]
    row.locator("button", has_text="Delete").click()
    row.wait_for(state="detached")
    guard.check()
