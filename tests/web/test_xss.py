"""The XSS set: markup, event handlers, javascript: URLs, SVG, markdown images to external hosts,
CSS tricks... sent as visitor messages, as agent messages (from an agent whose name is itself a
payload) and as the AI agent's answers (quoted from a knowledge document whose title and text
are payloads). In the widget, the agent console and the admin search they render as inert text:
no dialog, no script run, no injected element, no request leaving 127.0.0.1."""

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.live import LiveServer
from tests.web.conftest import Guard, login_agent, new_page, start_server

pytestmark = pytest.mark.slow

EVIL = "http://evil.example"
PAYLOADS: list[str] = [
    "<script>alert(1)</script>",
    "<script>window.__xss=1</script>",
    "<img src=x onerror=alert(1)>",
    "<img src=x onerror=\"window.__xss=1\">",
    f"<img src=\"{EVIL}/x.png\">",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
    "<svg><a xlink:href=\"javascript:alert(1)\"><text x=20 y=20>XSS</text></a></svg>",
    f"<svg><image href=\"{EVIL}/i.png\"/></svg>",
    "<iframe src=\"javascript:alert(1)\"></iframe>",
    "<iframe srcdoc=\"<script>alert(1)</script>\"></iframe>",
    "<a href=\"javascript:alert(1)\">click</a>",
    "javascript:alert(1)",
    "[click me](javascript:alert(1))",
    f"![tracking pixel]({EVIL}/track.png)",
    f"![x]({EVIL}/a.gif \"title\")",
    f"[x]({EVIL}/ \"onmouseover=alert(1)\")",
    "<body onload=alert(1)>",
    f"<div style=\"background:url({EVIL}/bg.png)\">bg</div>",
    "<div style=\"width: expression(alert(1))\">css expression</div>",
    f"<style>@import '{EVIL}/x.css';</style>",
    f"<style>body{{background:url({EVIL}/s.png)}}</style>",
    f"<link rel=stylesheet href={EVIL}/x.css>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<details open ontoggle=alert(1)>",
    "<input autofocus onfocus=alert(1)>",
    "<video><source onerror=alert(1)>",
    "<audio src=x onerror=alert(1)>",
    "<object data=\"javascript:alert(1)\">",
    "<embed src=\"javascript:alert(1)\">",
    "<form action=\"javascript:alert(1)\"><button>go</button></form>",
    "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">",
    f"<base href=\"{EVIL}/\">",
    "\"><script>alert(1)</script>",
    "'><img src=x onerror=alert(1)>",
    "</textarea><script>alert(1)</script>",
    "</title><script>alert(1)</script>",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<IMG SRC=JaVaScRiPt:alert(1)>",
    "<img src=`x` onerror=`alert(1)`>",
    "<a href=\"jav&#x09;ascript:alert(1)\">tab</a>",
    "<a href=\"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">data</a>",
    "data:text/html,<script>alert(1)</script>",
    "<marquee onstart=alert(1)>",
    "<template><img src=x onerror=alert(1)></template>",
    "{{constructor.constructor('alert(1)')()}}",
    "${alert(1)}",
    "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\">",
    "<x onclick=alert(1)>click me</x>",
    "<div onmouseover=\"alert(1)\">hover</div>",
    f"<img srcset=\"{EVIL}/s.png 1x\">",
    f"<picture><source srcset={EVIL}/p.png><img></picture>",
    f"<table background=\"{EVIL}/t.png\">",
    f"{EVIL}/\" onmouseover=\"alert(1)",
    "http://127.0.0.1/\"><script>alert(1)</script>",
    "<a href=\"https://example.com\" target=_self>tabnab</a>",
    "\u202e<script>alert(1)</script>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "<!--><script>alert(1)</script>-->",
    "<object type=\"image/svg+xml\" data=\"data:image/svg+xml,<svg onload=alert(1)>\"></object>",
]

#: The elements a message may legitimately render as: text in divs/spans, links.
CHECK_DOM = """([containers, allowed]) => {
  const roots = [document];
  for (const e of document.querySelectorAll('*')) if (e.shadowRoot) roots.push(e.shadowRoot);
  const problems = [];
  let scanned = 0;
  for (const root of roots) {
    for (const sel of containers) {
      for (const box of root.querySelectorAll(sel)) {
        for (const e of box.querySelectorAll('*')) {
          scanned += 1;
          const tag = e.tagName.toLowerCase();
          if (!allowed.includes(tag)) problems.push('element <' + tag + '>');
          for (const a of e.attributes) {
            if (a.name.startsWith('on') || a.name === 'style' || a.name === 'src' || a.name === 'srcset')
              problems.push('attribute ' + a.name + ' on <' + tag + '>');
          }
          if (tag === 'a') {
            const href = e.getAttribute('href') || '';
            if (!/^https?:\\/\\//i.test(href)) problems.push('link to ' + href);
            const rel = (e.getAttribute('rel') || '').split(/\\s+/);
            if (!rel.includes('noopener') || !rel.includes('noreferrer')) problems.push('link without rel');
          }
        }
      }
    }
    const banned = ['iframe', 'object', 'embed', 'img', 'svg', 'video', 'audio', 'base', 'meta[http-equiv]',
                    'form[action^="javascript"]'];
    for (const tag of banned) {
      for (const e of root.querySelectorAll(tag)) problems.push('page has <' + tag + '>');
    }
    for (const s of root.querySelectorAll('script')) {
      if (!s.src) problems.push('inline script');
    }
    for (const s of root.querySelectorAll('style')) problems.push('style element');
  }
  return {problems, scanned, xss: window.__xss === undefined ? null : window.__xss};
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("web-xss"), demo_knowledge=False)
    yield srv
    srv.stop()


def wait_until(cond: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.15)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def evil_kb(server: LiveServer) -> str:
    """A knowledge base whose document title and text are payloads, used by the default bot."""
    with server.admin() as admin:
        kb = admin.post("/v1/knowledge-bases", json={"name": "<b>evil</b> kb"}).json()["id"]
        body = "\n\n".join(f"The zorblax descaler manual, step {i}: {p} Then rinse the zorblax."
                           for i, p in enumerate(PAYLOADS))
        doc = admin.post(f"/v1/knowledge-bases/{kb}/documents",
                         json={"title": "<img src=x onerror=alert(1)> Zorblax descaler", "text": body})
        assert doc.status_code == 202, doc.text
        doc_id = doc.json()["document"]["id"]
        wait_until(lambda: admin.get(f"/v1/knowledge-bases/{kb}/documents/{doc_id}").json()["document"]["status"]
                   == "ready", what="the payload document to be indexed")
        bot = next(b for b in admin.get("/v1/bots").json()["bots"] if b["is_default"])
        r = admin.patch(f"/v1/bots/{bot['id']}", json={"knowledge_base_id": kb})
        assert r.status_code == 200, r.text
    return str(kb)


def check(page: Any, containers: list[str]) -> int:
    allowed = ["div", "span", "a", "strong", "li", "button", "tr", "td", "progress"]
    result = page.evaluate(CHECK_DOM, [containers, allowed])
    assert result["xss"] is None, "a payload ran"
    assert not result["problems"], result["problems"]
    return int(result["scanned"])


def test_payloads_render_inert_in_widget_console_and_admin(server: LiveServer, browser: Any, evil_kb: str,
                                                           tmp_path: Path) -> None:
    assert len(PAYLOADS) >= 50
    guard = Guard()
    email = f"xss-{uuid.uuid4().hex[:6]}@example.com"
    with server.admin() as admin:
        r = admin.post("/v1/agents", json={"name": "<img src=x onerror=alert(1)>Eve", "email": email,
                                           "password": "correct horse battery"})
        assert r.status_code == 201, r.text

    visitor = new_page(browser, guard)
    visitor.goto(server.url + "/")
    visitor.locator(".pw-launcher").click()
    # Model answers: the extractive answer quotes the payload document, cited by its payload title.
    box = visitor.locator(".pw-input")
    box.fill("How do I use the zorblax descaler?")
    box.press("Enter")
    answer = visitor.locator(".pw-msg.pw-bot[data-seq]").first
    answer.wait_for()
    assert "zorblax" in answer.inner_text().lower()
    # Ingestion drops HTML tags from documents (titles too), so what reaches the model's answers
    # is the markdown, URL and template part of the set; raw HTML arrives through people below.
    assert "Zorblax descaler" in answer.locator("[data-testid=citation]").first.inner_text()
    box.fill("zorblax tracking pixel image evil.example javascript click me")
    box.press("Enter")
    visitor.wait_for_function("() => document.querySelector('#parley-widget').shadowRoot"
                              ".querySelectorAll('.pw-msg.pw-bot[data-seq]').length >= 2")
    answers = " ".join(visitor.locator(".pw-msg.pw-bot[data-seq] .pw-text").all_inner_texts())
    assert any(m in answers for m in ("javascript:", "evil.example", "](", "${", "{{")), answers
    st = visitor.evaluate("window.__parley.state()")
    cid, token = st["conversationId"], st["token"]

    # Agent console open on the conversation while the payloads arrive live.
    agent = new_page(browser, guard)
    login_agent(agent, server, email)
    agent_token = agent.evaluate("JSON.parse(sessionStorage.getItem('parley:agent')).token")
    user_http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    agent_http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {agent_token}"}, timeout=10)
    # The agent writing first takes the conversation, so the bot stays quiet from here on.
    r = agent_http.post(f"/v1/conversations/{cid}/messages",
                        json={"client_msg_id": str(uuid.uuid4()), "text": PAYLOADS[0]})
    assert r.status_code == 201, r.text
    agent.locator("#mine [data-testid=conv]").first.click()
    for p in PAYLOADS:
        for http in (user_http, agent_http):
            r = http.post(f"/v1/conversations/{cid}/messages", json={"client_msg_id": str(uuid.uuid4()), "text": p})
            assert r.status_code == 201, (p, r.text)
    # Typed through the widget's own box too, and typing indicators carrying the agent's name.
    for p in PAYLOADS[:5]:
        box.fill(p)
        box.press("Enter")
    agent.locator("[data-testid=reply]").press_sequentially("<b>", delay=10)

    def user_seqs() -> list[int]:
        return [m["seq"] for m in user_http.get(f"/v1/conversations/{cid}/messages?limit=200").json()["messages"]]

    wait_until(lambda: visitor.evaluate("window.__parley.state()")["pending"] == 0, what="the typed payloads")
    wait_until(lambda: visitor.evaluate("window.__parley.seqs()") == user_seqs(),
               what="the widget to render every message")
    last = agent_http.get(f"/v1/conversations/{cid}/messages?limit=200").json()["messages"][-1]["seq"]
    wait_until(lambda: agent.evaluate("window.__console.seqs()") == list(range(1, last + 1)),
               what="the console to render every message")

    # Every payload is on screen, literally, as text: once from the visitor, once from the agent.
    widget_texts = visitor.locator(".pw-msg[data-seq] .pw-text").all_inner_texts()
    for p in PAYLOADS:
        assert widget_texts.count(p.strip()) >= 2, p
    console_texts = agent.locator(".msg[data-seq] .text").all_inner_texts()
    for p in PAYLOADS:
        assert console_texts.count(p.strip()) >= 2, p
    assert "<img src=x onerror=alert(1)>Eve" in visitor.locator("[data-testid=owner]").inner_text()

    assert check(visitor, [".pw-log", ".pw-typing", ".pw-owner", ".pw-toast"]) > 100
    assert check(agent, ["#log", "#queue", "#mine", "#drafts", "#typing"]) > 100
    # Suggested drafts quote the same knowledge.
    agent.locator("[data-testid=suggest]").click()
    agent.locator("[data-testid=draft]").first.wait_for()
    check(agent, ["#drafts"])

    # The admin search shows the payload chunks as text too.
    admin = new_page(browser, guard)
    admin.goto(server.url + "/admin#knowledge")
    admin.fill("[data-testid=admin-key]", server.admin_key)
    admin.click("#gate-form button[type=submit]")
    admin.locator("[data-testid=kb-select]").select_option(evil_kb)
    admin.locator("[data-testid=doc]").first.wait_for()
    admin.fill("[data-testid=search-q]", "zorblax descaler onerror")
    admin.click("#search-form button[type=submit]")
    admin.locator("[data-testid=hit]").first.wait_for()
    assert "<" in admin.locator("[data-testid=hit]").first.inner_text()
    check(admin, ["#hits", "#docs"])

    time.sleep(0.5)  # let any late image load or timer fire before the verdict
    guard.check()
    user_http.close()
    agent_http.close()
    for page in (visitor, agent, admin):
        page.context.close()
