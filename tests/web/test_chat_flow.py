"""The widget and the agent console in a real browser against one live server with the demo
knowledge base: a streamed, cited answer; a handoff the agent who comes online is given, answers and hands back;
a connection cut mid-conversation that the widget recovers from with nothing lost or doubled."""

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.live import LiveServer
from tests.web.conftest import Guard, login_agent, new_agent, new_page, shot, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("web-flow"), demo_knowledge=True)
    yield srv
    srv.stop()


def widget(page: Any) -> Any:
    return page.locator("#parley-widget")


def wait_until(cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def ask(page: Any, text: str) -> None:
    box = page.locator(".pw-input")
    box.fill(text)
    box.press("Enter")


def history_seqs(server: LiveServer, token: str, cid: str) -> list[int]:
    r = httpx.get(f"{server.url}/v1/conversations/{cid}/messages?limit=200",
                  headers={"Authorization": f"Bearer {token}"}, timeout=10)
    r.raise_for_status()
    return [m["seq"] for m in r.json()["messages"]]


def test_visitor_agent_handoff_and_handback(server: LiveServer, browser: Any, tmp_path: Path) -> None:
    guard = Guard()
    agent_id, _agent_token, email = new_agent(server, "Dana")
    visitor = new_page(browser, guard)
    visitor.goto(server.url + "/")
    visitor.locator(".pw-launcher").click()

    # 1. A question the demo knowledge base answers: streamed as deltas, then the cited message.
    ask(visitor, "How do I descale my coffee machine?")
    answer = visitor.locator(".pw-msg.pw-bot[data-seq]").first
    answer.wait_for()
    state = visitor.evaluate("window.__parley.state()")
    assert state["deltas"] > 1, "the answer streamed token by token"
    cite = answer.locator("[data-testid=citation]").first
    assert cite.inner_text().strip()
    assert "descal" in answer.inner_text().lower()
    assert visitor.locator("[data-testid=owner]").inner_text() == "Assistant · AI"
    shot(visitor, "widget.png", tmp_path)

    # 2. Talk to a human: no agent online yet, so the visitor waits in the queue.
    visitor.locator("[data-testid=human]").click()
    queue = visitor.locator("[data-testid=queue]")
    queue.wait_for()
    assert "#1 in the queue" in queue.inner_text()
    assert "min" in queue.inner_text()
    assert visitor.locator("[data-testid=owner]").get_attribute("data-status") == "queued"

    # 3. The agent signs in and is given the waiting conversation at once (an agent who comes
    #    online is offered the queue), opens it from their own list and reads the summary note.
    #    (Claiming by hand is what an agent does when no capacity is free: REST and e2e tests.)
    agent = new_page(browser, guard)
    login_agent(agent, server, email)
    agent.locator("#mine [data-testid=conv]").first.click()
    note = agent.locator(".msg-note").first
    note.wait_for()
    assert "descale" in note.inner_text().lower()
    assert agent.locator("[data-testid=conv-status]").inner_text() == "assigned to you"
    assert agent.locator("#queue [data-testid=conv]").count() == 0
    owner = visitor.locator("[data-testid=owner]")
    visitor.wait_for_function(
        "() => document.querySelector('#parley-widget').shadowRoot"
        ".querySelector('[data-testid=owner]').dataset.status === 'assigned'")
    assert "Dana" in owner.inner_text()
    assert visitor.locator("[data-testid=queue]").is_hidden()

    # 4. Typing shows; a suggested draft goes into the reply box; the reply reaches the visitor.
    agent.locator("[data-testid=reply]").press_sequentially("Hi", delay=20)
    visitor.locator("[data-testid=typing]").wait_for()
    assert "Dana is typing" in visitor.locator("[data-testid=typing]").inner_text()
    agent.locator("[data-testid=suggest]").click()
    agent.locator("[data-testid=insert]").first.click()
    suggested = agent.locator("[data-testid=reply]").input_value()
    assert suggested and suggested != "Hi"
    agent.locator("[data-testid=reply]").fill("Hi, I'm Dana. Hold both buttons for 3 seconds to start descaling.")
    agent.locator("[data-testid=send]").click()
    human_msg = visitor.locator(".pw-msg.pw-agent[data-seq]").first
    human_msg.wait_for()
    assert "I'm Dana" in human_msg.inner_text()
    assert "Dana" in human_msg.locator(".pw-who").inner_text()

    # 5. The visitor answers; the agent sees it and its read mark comes back as "Seen".
    ask(visitor, "thanks, that worked")
    agent.locator(".msg-user", has_text="thanks, that worked").wait_for()
    visitor.locator("[data-testid=read]").wait_for()
    shot(agent, "agent-console.png", tmp_path)

    # 6. Hand back to the AI: the visitor sees the owner change and the bot answers again.
    agent.locator("[data-testid=handback]").click()
    visitor.wait_for_function(
        "() => document.querySelector('#parley-widget').shadowRoot"
        ".querySelector('[data-testid=owner]').dataset.status === 'bot'")
    visitor.locator(".pw-msg.pw-system", has_text="assistant is back").wait_for()
    bots_before = visitor.locator(".pw-msg.pw-bot[data-seq]").count()
    ask(visitor, "How much does standard delivery cost?")
    visitor.wait_for_function(
        f"() => document.querySelector('#parley-widget').shadowRoot"
        f".querySelectorAll('.pw-msg.pw-bot[data-seq]').length > {bots_before}")
    again = visitor.locator(".pw-msg.pw-bot[data-seq]").last
    assert "shipping" in again.locator("[data-testid=citation]").first.inner_text().lower()

    # Nothing rendered twice, nothing missing against the server's history.
    st = visitor.evaluate("window.__parley.state()")
    seqs = visitor.evaluate("window.__parley.seqs()")
    assert seqs == history_seqs(server, st["token"], st["conversationId"])
    agent_seqs = agent.evaluate("window.__console.seqs()")
    assert agent_seqs == list(range(1, len(agent_seqs) + 1)), "the console shows every seq, notes included"
    assert agent_id
    guard.check()
    visitor.context.close()
    agent.context.close()


def test_reconnect_resumes_without_loss_or_duplicates(server: LiveServer, browser: Any, tmp_path: Path) -> None:
    guard = Guard()
    _, agent_token, email = new_agent(server, "Rita")
    visitor = new_page(browser, guard)
    visitor.goto(server.url + "/")
    visitor.locator(".pw-launcher").click()
    ask(visitor, "What is the warranty on the machine?")
    visitor.locator(".pw-msg.pw-bot[data-seq]").first.wait_for()
    st = visitor.evaluate("window.__parley.state()")
    cid, token = st["conversationId"], st["token"]
    agent_http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {agent_token}"}, timeout=10)

    # Cut the socket; while it is down the agent writes three times and the visitor once.
    visitor.evaluate("window.__parley.drop(3000)")
    wait_until(lambda: not visitor.evaluate("window.__parley.state()")["connected"], what="the cut")
    visitor.locator("[data-testid=banner]").wait_for()
    for i in range(3):
        r = agent_http.post(f"/v1/conversations/{cid}/messages",
                            json={"client_msg_id": str(uuid.uuid4()), "text": f"agent while you were away {i}"})
        assert r.status_code == 201
    ask(visitor, "written while offline")
    assert visitor.locator("[data-testid=pending]").count() == 1

    def caught_up() -> bool:
        s = visitor.evaluate("window.__parley.state()")
        return bool(s["connected"]) and s["pending"] == 0 and \
            visitor.evaluate("window.__parley.seqs()") == history_seqs(server, token, cid)

    wait_until(caught_up, what="the widget to catch up after reconnecting")
    texts = visitor.locator(".pw-msg[data-seq] .pw-text").all_inner_texts()
    for i in range(3):
        assert texts.count(f"agent while you were away {i}") == 1
    assert texts.count("written while offline") == 1
    assert visitor.locator("[data-testid=banner]").is_hidden()

    # A second cut right as the agent writes again, and a reload: still exactly the history.
    visitor.evaluate("window.__parley.drop(500)")
    agent_http.post(f"/v1/conversations/{cid}/messages",
                    json={"client_msg_id": str(uuid.uuid4()), "text": "one more while reconnecting"})
    wait_until(caught_up, what="the second recovery")
    visitor.reload()
    visitor.locator(".pw-launcher").click()
    wait_until(caught_up, what="the reload to replay the stored conversation")
    seqs = visitor.evaluate("window.__parley.seqs()")
    assert len(seqs) == len(set(seqs))

    # The agent resolves it from the console; the visitor sees it.
    agent = new_page(browser, guard)
    login_agent(agent, server, email)
    agent.locator("#mine [data-testid=conv]").first.click()
    agent.locator(".msg", has_text="written while offline").wait_for()
    # The console recovers from a cut the same way: resume from its last seq, nothing doubled.
    agent.evaluate("window.__console.drop()")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as user_http:
        for i in range(2):
            r = user_http.post(f"/v1/conversations/{cid}/messages",
                               json={"client_msg_id": str(uuid.uuid4()), "text": f"visitor during the agent's cut {i}"})
            assert r.status_code == 201
    last = agent_http.get(f"/v1/conversations/{cid}/messages?limit=200").json()["messages"][-1]["seq"]
    wait_until(lambda: agent.evaluate("window.__console.seqs()") == list(range(1, last + 1)),
               what="the console to catch up after its cut")
    assert agent.locator(".msg", has_text="visitor during the agent's cut 1").count() == 1
    agent.locator("#conn.ok").wait_for()
    agent.locator("[data-testid=resolve]").click()
    visitor.wait_for_function(
        "() => document.querySelector('#parley-widget').shadowRoot"
        ".querySelector('[data-testid=owner]').dataset.status === 'resolved'")
    agent_http.close()
    guard.check()
    visitor.context.close()
    agent.context.close()


def test_admin_dashboard_and_knowledge(server: LiveServer, browser: Any, tmp_path: Path) -> None:
    # The handoff counter counts the AI agent's own handoff decisions: ask it for a person in words.
    token = server.token("metrics-visitor", name="Mia")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
        r = http.post("/v1/conversations", json={"text": "This is useless, I want to talk to a human agent now"})
        assert r.status_code == 201

    def metric(prefix: str) -> float:
        text = httpx.get(server.url + "/metrics", timeout=5).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))

    wait_until(lambda: metric("parley_handoffs_total{") >= 1, what="the AI agent's handoff")
    guard = Guard()
    visitor = new_page(browser, guard)  # one live connection for the dashboard to count
    visitor.goto(server.url + "/")
    visitor.locator(".pw-launcher").click()
    wait_until(lambda: visitor.evaluate("window.__parley.state()")["connected"], what="the visitor's socket")
    page = new_page(browser, guard)
    page.goto(server.url + "/admin")
    page.fill("[data-testid=admin-key]", "wrong")
    page.click("#gate-form button[type=submit]")
    page.locator("#gate-error", has_text="not accepted").wait_for()
    page.fill("[data-testid=admin-key]", server.admin_key)
    page.click("#gate-form button[type=submit]")
    page.wait_for_function("() => document.querySelector('[data-testid=k-answers]').textContent !== '–'")
    assert int(page.locator("[data-testid=k-answers]").inner_text()) == int(metric("parley_bot_answers_total "))
    assert int(page.locator("[data-testid=k-handoffs]").inner_text()) >= 1
    assert page.locator("#handoff-bars .bar").count() >= 1
    page.wait_for_function("() => document.querySelector('[data-testid=k-answers]').textContent !== '–'")
    page.locator("[data-testid=k-conn]").filter(has_text="1").wait_for()
    page.wait_for_timeout(3500)  # a second poll draws the connections line and the answer rate
    shot(page, "admin.png", tmp_path)

    # Knowledge: search shows chunks with scores; an upload shows progress and becomes ready.
    page.click("#tabs button[data-tab=knowledge]")
    page.locator("[data-testid=doc]").first.wait_for()
    page.fill("[data-testid=search-q]", "descale")
    page.click("#search-form button[type=submit]")
    hit = page.locator("[data-testid=hit]").first
    hit.wait_for()
    assert float(hit.locator(".score").inner_text()) > 0
    page.set_input_files("[data-testid=file]", files=[{
        "name": "returns.md", "mimeType": "text/markdown",
        "buffer": b"# Returns\n\nYou can return a Brightbrew machine within 30 days for a full refund.\n"}])
    page.click("#upload")
    page.locator("#uploads", has_text="uploaded").wait_for()
    page.locator("[data-testid=doc]", has_text="upload:returns.md").locator(".pill.ready").wait_for()

    # Push rules: create one, see it listed with its stats.
    page.click("#tabs button[data-tab=push]")
    page.fill("#r-name", "Cart reminder")
    page.fill("#r-trigger", "cart.abandoned")
    page.click("#rule-form button[type=submit]")
    page.locator("[data-testid=rule]", has_text="Cart reminder").wait_for()
    page.click("#tabs button[data-tab=bots]")
    page.locator("[data-testid=bot]").first.wait_for()
    guard.check()
    page.context.close()
    visitor.context.close()


PUSH_STUB = """
(() => {
  // Headless Chromium has no push service; record what the widget asks for and answer with a
  // well-formed subscription, so the page's own flow (VAPID key, subscribe, POST /v1/devices) runs.
  const b64 = (n) => btoa(String.fromCharCode(...new Uint8Array(n).map((_, i) => (i * 7 + 4) % 256)))
    .replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
  const key = new Uint8Array(65); key[0] = 4;
  window.__pushCalls = [];
  PushManager.prototype.subscribe = async function (opts) {
    window.__pushCalls.push(opts.applicationServerKey.byteLength);
    const json = {endpoint: 'https://push.invalid/send/abc', expirationTime: null,
                  keys: {p256dh: btoa(String.fromCharCode(...key)).replace(/\\+/g, '-').replace(/\\//g, '_')
                    .replace(/=+$/, ''), auth: b64(16)}};
    return {endpoint: json.endpoint, toJSON: () => json};
  };
})();
"""


def test_web_push_opt_in_registers_the_service_worker_and_device(server: LiveServer, browser: Any) -> None:
    guard = Guard()
    ctx = browser.new_context()
    guard.attach(ctx)
    ctx.grant_permissions(["notifications"], origin=server.url)
    ctx.add_init_script(PUSH_STUB)
    page = guard.watch(ctx.new_page())
    page.goto(server.url + "/")
    page.locator(".pw-launcher").click()
    with page.expect_response(lambda r: r.url.endswith("/v1/devices")) as posted:
        page.locator("[data-testid=push]").click()
    assert posted.value.status == 201
    page.locator("[data-testid=push]", has_text="Notifications on").wait_for()
    assert page.evaluate("window.__pushCalls") == [65], "subscribed with the tenant's VAPID public key"
    scope = page.evaluate("navigator.serviceWorker.getRegistration().then(r => r && r.scope)")
    assert scope == server.url + "/"
    guard.check()
    ctx.close()
