"""The desk in a real browser: in the agent console, typing ``/`` in the reply box offers the
matching canned responses and inserts the chosen one with its variables filled in; a label is put
on the conversation and shown."""

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
    srv = start_server(tmp_path_factory.mktemp("web-desk"), demo_knowledge=False)
    srv.without_bot()
    yield srv
    srv.stop()


def test_slash_offers_canned_responses_and_inserts_the_rendered_text(server: LiveServer, browser: Any,
                                                                     tmp_path: Path) -> None:
    guard = Guard()
    _agent_id, token, email = new_agent(server, "Mira")
    with server.admin() as admin:
        for body in ({"title": "Greeting", "shortcut": "greet", "text": "Hello {{user.name}}, {{agent.name}} here."},
                     {"title": "Goodbye", "shortcut": "bye", "text": "Bye!"}):
            admin.post("/v1/canned-responses", json=body).raise_for_status()
        label = admin.post("/v1/labels", json={"name": "billing", "colour": "#aa3300"}).json()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as c:
        c.post("/v1/canned-responses", json={"title": "My sign-off", "shortcut": "greet-late",
                                             "text": "Talk soon, {{user.name}}."}).raise_for_status()
    visitor = server.token("visitor-desk", name="Ada")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {visitor}"}, timeout=10) as c:
        conv = c.post("/v1/conversations", json={"text": "my invoice is wrong"}).json()["conversation"]["id"]

    page = new_page(browser, guard)
    login_agent(page, server, email)
    # the console may already have assigned it to the agent (capacity), so it is in the queue or in Mine
    page.locator(f"[data-testid=conv][data-cid='{conv}']").first.click()
    reply = page.locator("[data-testid=reply]")
    reply.click()
    reply.press_sequentially("/gre")
    options = page.locator("[data-testid=canned] [data-testid=canned-option]")
    options.first.wait_for()
    # the tenant's and the agent's own that start with "gre"; not /bye
    assert options.locator(".shortcut").all_inner_texts() == ["/greet", "/greet-late"]
    assert options.locator(".scope").all_inner_texts() == ["team", "mine"]
    shot(page, "console-canned.png", tmp_path)
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('[data-testid=reply]').value.includes('Hello')")
    assert reply.input_value() == "Hello Ada, Mira here."
    assert page.locator("[data-testid=canned]").is_hidden()

    # the second option by arrow key, after text already typed: only the "/word" is replaced
    reply.fill("")
    reply.press_sequentially("Thanks! /greet")
    options.first.wait_for()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('[data-testid=reply]').value.includes('soon')")
    assert reply.input_value() == "Thanks! Talk soon, Ada."

    # a shortcut that matches nothing offers nothing, and Enter stays a newline
    reply.fill("")
    reply.press_sequentially("/zzz")
    assert page.locator("[data-testid=canned]").is_hidden()

    # a label put on the conversation shows as a chip, and the REST filter finds it
    page.locator("[data-testid=label-add]").select_option(label["id"])
    page.locator("[data-testid=labels] [data-testid=label]", has_text="billing").wait_for()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as c:
        listed = c.get("/v1/conversations", params={"label": label["id"]}).json()["conversations"]
    assert [x["id"] for x in listed] == [conv]
    guard.check()


def test_an_agent_finds_a_conversation_by_its_words_and_by_label(server: LiveServer, browser: Any,
                                                                  tmp_path: Path) -> None:
    """The console's search: words of a message find its conversation (Chinese too), a label lists the
    conversations carrying it, and a result opens the conversation."""
    guard = Guard()
    _agent_id, token, email = new_agent(server, "Noor")
    with server.admin() as admin:
        label = admin.post("/v1/labels", json={"name": "warranty", "colour": "#117733"}).json()
    convs = {}
    for who, text in (("visitor-find-1", "the grinder jams after descaling"),
                      ("visitor-find-2", "保修期是多久"), ("visitor-find-3", "where is my parcel")):
        v = server.token(who, name=who)
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {v}"}, timeout=10) as c:
            convs[who] = c.post("/v1/conversations", json={"text": text}).json()["conversation"]["id"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as c:
        c.put(f"/v1/conversations/{convs['visitor-find-2']}/labels/{label['id']}").raise_for_status()

    page = new_page(browser, guard)
    login_agent(page, server, email)
    found = page.locator("[data-testid=found] [data-testid=found-item]")
    page.locator("[data-testid=find-q]").fill("grinder descal")
    page.locator("[data-testid=find-go]").click()
    found.first.wait_for()
    assert found.evaluate_all("els => els.map(e => e.dataset.cid)") == [convs["visitor-find-1"]]
    assert "the grinder jams after descaling" in found.first.inner_text()
    shot(page, "console-search.png", tmp_path)

    page.locator("[data-testid=find-q]").fill("保修")
    page.locator("[data-testid=find-go]").click()
    page.wait_for_function(f"() => [...document.querySelectorAll('[data-testid=found-item]')]"
                           f".map(e => e.dataset.cid).join() === '{convs['visitor-find-2']}'")

    page.locator("[data-testid=find-q]").fill("")
    page.locator("[data-testid=find-label]").select_option(label["id"])
    page.wait_for_function(f"() => [...document.querySelectorAll('[data-testid=found-item]')]"
                           f".map(e => e.dataset.cid).join() === '{convs['visitor-find-2']}'")
    found.first.click()
    page.locator("[data-testid=labels] [data-testid=label]", has_text="warranty").wait_for()
    assert page.locator("[data-testid=log]").inner_text().count("保修期是多久") == 1
    guard.check()
