"""The desk's operations through the real server (uvicorn on loopback, real sockets), on SQLite and
PostgreSQL: private notes (agents only: never in the user's frames, history or the AI's context),
@mentions resolved within the tenant and told live and by push, transfer to an agent or a team
(kept in the history, capacity respected), and a tenant's routing rules for handoffs."""

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from server.accounts.tenants import create_tenant
from server.chat.lifecycle import (
    Action,
    Actor,
    ActorKind,
    ConversationState,
    Follow,
    Status,
    TransitionRefused,
    transition,
)
from server.core.models import OutboxRow
from server.desk.models import NoteMention
from server.desk.notes import agent_push_id, mention_tokens, resolve_mentions
from server.desk.routing import match_rule
from server.push.models import Notification
from tests.conftest import create_pg_database, drop_pg_database
from tests.support.inproc import FAST, InProcServer, make_settings
from tests.support.ws import WsClient


@dataclass
class World:
    srv: InProcServer
    admin: str
    other_admin: str
    tag: str
    agents: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (id, token)
    olga: tuple[str, str] = ("", "")  # an agent of another tenant
    other_team: str = ""

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.srv.url, headers={"Authorization": f"Bearer {token}"}, timeout=20)

    def id(self, name: str) -> str:
        return self.agents[name][0]

    def tok(self, name: str) -> str:
        return self.agents[name][1]

    def email(self, name: str) -> str:
        return f"{name.split()[0].lower()}-{self.tag}@x.io"


AGENTS = ["Dana Reyes", "Eli Park", "Fay Wong", "Gus Lund", "Hal Berg"]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def w(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    url = asyncio.run(create_pg_database()) if request.param == "postgres" else None
    data: Path = tmp_path_factory.mktemp(f"desk-ops-{request.param}")
    srv = InProcServer(make_settings(data, url, snooze_poll_s=0.2, **FAST)).start()
    try:
        other = srv.call(create_tenant(srv.app.state.db, "Other Inc"))
        w = World(srv, srv.admin_key, other.admin_key, uuid.uuid4().hex[:6])
        for name in AGENTS:
            w.agents[name.split()[0]] = srv.agent(name, w.email(name))
        with httpx.Client(base_url=srv.url, timeout=10, headers={"Authorization": f"Bearer {other.admin_key}"}) as ob:
            r = ob.post("/v1/agents", json={"name": "Olga", "email": f"olga-{w.tag}@x.io",
                                            "password": "correct horse battery"})
            w.olga = (r.json()["id"], ob.post("/v1/tokens", json={"sub": r.json()["id"], "role": "agent"})
                      .json()["token"])
            w.other_team = ob.post("/v1/teams", json={"name": "Theirs"}).json()["id"]
        yield w
    finally:
        srv.stop()
        if url:
            asyncio.run(drop_pg_database(url))


def err(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


def new_user(w: World, name: str = "Alice") -> tuple[str, str, str]:
    """(user id, token, a new conversation of theirs, with the AI agent)."""
    uid = f"{name.lower()}-{uuid.uuid4().hex[:6]}"
    token = w.srv.token(uid, name=name)
    with w.client(token) as c:
        cid = c.post("/v1/conversations", json={}).json()["conversation"]["id"]
    return uid, token, cid


def note(w: World, who: str, cid: str, text: str, cmid: str | None = None) -> httpx.Response:
    with w.client(w.tok(who)) as c:
        return c.post(f"/v1/conversations/{cid}/notes", json={"text": text, "client_msg_id": cmid or str(uuid.uuid4())})


def history(w: World, token: str, cid: str) -> list[dict[str, Any]]:
    with w.client(token) as c:
        r = c.get(f"/v1/conversations/{cid}/messages")
    assert r.status_code == 200, r.text
    return list(r.json()["messages"])


def rows(w: World, model: Any, *where: Any) -> list[Any]:
    async def q() -> list[Any]:
        async with w.srv.app.state.db.session() as s:
            return list((await s.exec(select(model).where(*where))).all())
    return list(w.srv.call(q()))


def wait_for(what: Any, timeout: float = 15.0) -> Any:
    """Poll until ``what()`` is truthy (work the server does after answering, e.g. the push worker)."""
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


# ---- mentions: parsing and resolution (pure) ---------------------------------------------------


def test_mentions_are_read_from_the_text_and_resolved_to_one_agent_each() -> None:
    from server.core.models import Agent

    ann = Agent(id="a1", tenant_id="t", email="ann@x.io", name="Ann Lee", password_hash="")
    ann2 = Agent(id="a2", tenant_id="t", email="ann.k@x.io", name="Ann Kim", password_hash="")
    bob = Agent(id="b", tenant_id="t", email="bob@x.io", name="Bob Stone", password_hash="")
    text = "ping @bob and @Ann.Lee, @ann.k@x.io; not mail@bob.io nor @ann; again @BOB."
    tokens = mention_tokens(text, 10)
    assert tokens == ["bob", "ann.lee", "ann.k@x.io", "ann"]
    got = resolve_mentions(tokens, [ann, ann2, bob])
    assert [a.id for a in got.agents] == ["b", "a1", "a2"]
    assert got.unresolved == ["ann"]  # two agents are called Ann
    assert mention_tokens("@a @b @c", 2) == ["a", "b"]


def test_routing_rules_match_topics_as_words_and_attributes_as_values() -> None:
    from server.desk.models import RoutingRule

    billing = RoutingRule(tenant_id="t", team_id="billing", kind="topic", keyword="invoice")
    refund = RoutingRule(tenant_id="t", team_id="billing", kind="topic", keyword="退款")
    vip = RoutingRule(tenant_id="t", team_id="vip", kind="attribute", attribute="plan", value="Enterprise")
    rules = [vip, billing, refund]
    assert match_rule(rules, texts=["My INVOICE is wrong!"], attributes={}) is billing
    assert match_rule(rules, texts=["invoices"], attributes={}) is None  # a word, not a prefix
    assert match_rule(rules, texts=["我想要退款"], attributes={}) is refund
    assert match_rule(rules, texts=["invoice"], attributes={"plan": "enterprise"}) is vip  # first rule wins
    assert match_rule(rules, texts=["hi"], attributes={"plan": ["enterprise"]}) is None


NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
_ACTORS = {"user": Actor(ActorKind.USER, "u1", "Ada"), "a1": Actor(ActorKind.AGENT, "a1", "Sam"),
           "a2": Actor(ActorKind.AGENT, "a2", "Kim"), "bot": Actor(ActorKind.BOT, "b", "AI"),
           "system": Actor(ActorKind.SYSTEM, "admin", "Admin")}
_STATES = {
    Status.BOT: ConversationState("c1", "t1", "u1", Status.BOT),
    Status.QUEUED: ConversationState("c1", "t1", "u1", Status.QUEUED, handoff_reason="user_request"),
    Status.ASSIGNED: ConversationState("c1", "t1", "u1", Status.ASSIGNED, assignee_id="a1", last_agent_id="a1"),
    Status.RESOLVED: ConversationState("c1", "t1", "u1", Status.RESOLVED, assignee_id="a1", last_agent_id="a1"),
}
# transfer to agent a3 (A3), to agent a1 (A1), or to the queue (Q): the outcome per status and actor
TRANSFERS = """
status    actor   to-a3 to-a1 to-queue
bot       user    X     X     X
bot       a1      A3    A1    Q
bot       a2      A3    A1    Q
bot       bot     X     X     X
bot       system  A3    A1    Q
queued    a1      A3    A1    Q
queued    a2      A3    A1    Q
queued    system  A3    A1    Q
assigned  user    X     X     X
assigned  a1      A3    =     Q
assigned  a2      X     X     X
assigned  system  A3    =     Q
resolved  a1      X     X     X
resolved  system  X     X     X
"""


@pytest.mark.parametrize("row", TRANSFERS.strip().splitlines()[1:])
def test_the_transfer_transition(row: str) -> None:
    status, actor, *outcomes = row.split()
    conv = _STATES[Status(status)]
    for target, outcome in zip((Actor(ActorKind.AGENT, "a3", "Lee"), Actor(ActorKind.AGENT, "a1", "Sam"), None),
                               outcomes, strict=True):
        if outcome == "X":
            with pytest.raises(TransitionRefused):
                transition(conv, Action.TRANSFER, _ACTORS[actor], NOW, target=target, comment="why")
            continue
        c = transition(conv, Action.TRANSFER, _ACTORS[actor], NOW, target=target, comment="why")
        if outcome == "=":
            assert not c.changed and c.note_text is None
            continue
        assert c.changed and c.note_text is not None and c.note_text.endswith(": why") and c.stop_bot
        if outcome == "Q":
            assert (c.status, c.assignee_id, c.handoff_reason) == (Status.QUEUED, None, "transfer")
            assert c.offer_waiting
            assert c.follow == (Follow("user", "u1"),)
        else:
            agent = outcome.lower()
            assert (c.status, c.assignee_id, c.last_agent_id) == (Status.ASSIGNED, agent, agent)
            assert Follow("agent", agent) in c.follow and c.system_text == f"{target.name} joined the conversation"
            # the former owner has room again; a queue it left hears its new places
            assert c.offer_waiting is (conv.status is Status.ASSIGNED)
            assert c.republish_queue is (conv.status is Status.QUEUED)


# ---- notes -------------------------------------------------------------------------------------


async def test_a_note_reaches_the_agents_only_and_tells_whom_it_mentions(w: World) -> None:
    uid, alice, cid = new_user(w)
    user_ws = await WsClient.connect(w.srv.ws_url, alice)
    eli_ws = await WsClient.connect(w.srv.ws_url, w.tok("Eli"))
    olga_ws = await WsClient.connect(w.srv.ws_url, w.olga[1])
    try:
        secret = f"refund-code-{uuid.uuid4().hex[:8]}"
        text = (f"@eli can you check {secret}? cc @{w.email('Fay Wong')} @olga @olga-{w.tag}@x.io @nobody "
                "and me @dana.reyes")
        r = await asyncio.to_thread(note, w, "Dana", cid, text)
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["message"]["kind"] == "note" and body["message"]["sender"]["id"] == w.id("Dana")
        assert {m["agent_id"] for m in body["mentions"]} == {w.id("Eli"), w.id("Fay")}  # not the author
        assert {"olga", f"olga-{w.tag}@x.io", "nobody"} <= set(body["unresolved"])  # another tenant's: nobody

        frame = await eli_ws.expect("note.mention", timeout=10)
        assert frame["conversation_id"] == cid and secret in frame["mention"]["text"]
        assert frame["mention"]["author_name"] == "Dana Reyes" and frame["message"]["kind"] == "note"
        # the end user's socket and the other tenant's agent never see it
        assert all(secret not in str(f) for f in await user_ws.drain(0.5))
        assert all(secret not in str(f) for f in await olga_ws.drain(0.2))
    finally:
        for ws in (user_ws, eli_ws, olga_ws):
            await ws.close()

    assert all(secret not in m["text"] for m in await asyncio.to_thread(history, w, alice, cid))
    assert any(m["kind"] == "note" and secret in m["text"]
               for m in await asyncio.to_thread(history, w, w.tok("Gus"), cid))
    with w.client(w.tok("Eli")) as c:
        mine = c.get("/v1/mentions", params={"unread": "true"}).json()
        assert mine["unread"] >= 1 and any(m["conversation_id"] == cid and secret in m["text"]
                                           for m in mine["mentions"])
        message_id = body["message"]["id"]
        assert c.post(f"/v1/mentions/{message_id}/read").status_code == 200
        assert all(m["message_id"] != message_id
                   for m in c.get("/v1/mentions", params={"unread": "true"}).json()["mentions"])
        assert any(m["message_id"] == message_id and m["read_at"] for m in c.get("/v1/mentions").json()["mentions"])
    with w.client(w.tok("Gus")) as c:  # not mentioned: not theirs to read
        assert err(c.post(f"/v1/mentions/{message_id}/read")) == (404, "not_found")
        assert all(m["message_id"] != message_id for m in c.get("/v1/mentions").json()["mentions"])
    with w.client(w.olga[1]) as c:
        assert c.get("/v1/mentions").json()["mentions"] == []
        assert err(c.post(f"/v1/mentions/{message_id}/read")) == (404, "not_found")
    assert uid


def test_a_retried_note_is_one_note_and_each_mention_once(w: World) -> None:
    _uid, alice, cid = new_user(w)
    cmid = str(uuid.uuid4())
    first = note(w, "Dana", cid, "@eli one for you", cmid)
    again = note(w, "Dana", cid, "@eli one for you", cmid)
    assert first.status_code == again.status_code == 201
    assert again.json()["duplicate"] is True and again.json()["message"]["id"] == first.json()["message"]["id"]
    mid = first.json()["message"]["id"]
    assert [m.agent_id for m in rows(w, NoteMention, NoteMention.message_id == mid)] == [w.id("Eli")]
    assert sum(m["kind"] == "note" for m in history(w, w.tok("Dana"), cid)) == 1
    # the same key with another text is refused, and nothing more is stored
    assert err(note(w, "Dana", cid, "@fay something else", cmid)) == (409, "idempotency_key_reused")
    assert [m.agent_id for m in rows(w, NoteMention, NoteMention.message_id == mid)] == [w.id("Eli")]
    assert all("something else" not in m["text"] for m in history(w, w.tok("Dana"), cid))
    assert alice


def test_bad_notes_are_refused_and_nothing_is_stored(w: World) -> None:
    _uid, alice, cid = new_user(w)
    assert err(note(w, "Dana", cid, "   ")) == (422, "empty_message")
    assert err(note(w, "Dana", cid, "x" * 5000)) == (413, "too_long")
    assert err(note(w, "Dana", cid, "@eli hi", "not-a-uuid"))[0] in (400, 422)
    assert err(note(w, "Dana", "0" * 32, "@eli hi")) == (404, "not_found")
    with w.client(alice) as c:  # an end user cannot write one
        r = c.post(f"/v1/conversations/{cid}/notes", json={"text": "@eli hi", "client_msg_id": str(uuid.uuid4())})
        assert err(r) == (403, "forbidden")
    with w.client(w.olga[1]) as c:  # another tenant's conversation looks missing
        r = c.post(f"/v1/conversations/{cid}/notes", json={"text": "hi", "client_msg_id": str(uuid.uuid4())})
        assert err(r) == (404, "not_found")
    assert [m for m in history(w, w.tok("Dana"), cid) if m["kind"] == "note"] == []


def test_a_mentioned_agent_with_a_device_gets_a_push_and_one_without_does_not(w: World) -> None:
    with w.client(w.tok("Hal")) as c:
        r = c.post("/v1/devices", json={"platform": "fcm", "token": f"hal-{w.tag}"})
        assert r.status_code == 201, r.text
    _uid, _alice, cid = new_user(w)
    r = note(w, "Dana", cid, "@hal and @gus: the customer is waiting")
    assert r.status_code == 201, r.text
    mid = r.json()["message"]["id"]
    hal, gus = agent_push_id(w.id("Hal")), agent_push_id(w.id("Gus"))
    pushed = wait_for(lambda: rows(w, Notification, Notification.user_id == hal, Notification.data.isnot(None)))
    pushed = [n for n in pushed if (n.data or {}).get("message_id") == mid]
    assert len(pushed) == 1
    assert pushed[0].title == "Dana Reyes mentioned you" and "customer is waiting" in pushed[0].body
    assert pushed[0].url == f"/agent?conversation={cid}"
    # both push rows were handled; Gus has no device, so nothing was decided for him
    assert wait_for(lambda: all(o.done for o in rows(w, OutboxRow, OutboxRow.topic == "push")
                                if (o.payload or {}).get("message_id") == mid))
    assert rows(w, Notification, Notification.user_id == gus) == []


# ---- transfer ----------------------------------------------------------------------------------


def transfer(w: World, token: str, cid: str, **body: Any) -> httpx.Response:
    with w.client(token) as c:
        return c.post(f"/v1/conversations/{cid}/transfer", json=body)


def claim(w: World, who: str, cid: str) -> None:
    with w.client(w.tok(who)) as c:
        assert c.post(f"/v1/conversations/{cid}/claim").status_code == 200


async def test_a_transfer_to_an_agent_is_kept_in_the_history_and_the_agent_follows_it(w: World) -> None:
    _uid, alice, cid = new_user(w)
    await asyncio.to_thread(claim, w, "Dana", cid)
    eli_ws = await WsClient.connect(w.srv.ws_url, w.tok("Eli"))
    try:
        r = await asyncio.to_thread(transfer, w, w.tok("Dana"), cid, agent_id=w.id("Eli"),
                                    comment="billing question, over to you")
        assert r.status_code == 200, r.text
        assert r.json()["conversation"]["assignee"] == w.id("Eli")
        assert r.json()["conversation"]["status"] == "assigned"
        await eli_ws.expect("conversation.updated", timeout=10)
        with w.client(alice) as c:  # Eli now follows it
            assert c.post(f"/v1/conversations/{cid}/messages",
                          json={"text": "still there?", "client_msg_id": str(uuid.uuid4())}).status_code == 201
        while (await eli_ws.expect("message", timeout=10, conversation_id=cid))["message"]["text"] != "still there?":
            pass
    finally:
        await eli_ws.close()
    agents_view = await asyncio.to_thread(history, w, w.tok("Eli"), cid)
    notes = [m for m in agents_view if m["kind"] == "note"]
    assert notes and notes[-1]["text"] == ("Dana Reyes transferred this conversation to Eli Park: "
                                           "billing question, over to you")
    assert notes[-1]["sender"]["id"] == w.id("Dana")
    users_view = await asyncio.to_thread(history, w, alice, cid)
    assert all("billing question" not in m["text"] for m in users_view)
    assert any(m["kind"] == "system" and m["text"] == "Eli Park joined the conversation" for m in users_view)
    # the former owner no longer writes into it; the new one does
    with w.client(w.tok("Dana")) as c:
        r = c.post(f"/v1/conversations/{cid}/messages", json={"text": "me?", "client_msg_id": str(uuid.uuid4())})
        assert err(r) == (403, "forbidden")


def test_transfer_refusals(w: World) -> None:
    _uid, alice, cid = new_user(w)
    claim(w, "Dana", cid)
    dana = w.tok("Dana")
    with w.client(w.admin) as a:
        ghost = a.post("/v1/agents", json={"name": "Ghost", "email": f"ghost-{w.tag}@x.io",
                                           "password": "correct horse battery"}).json()["id"]
        assert a.post(f"/v1/agents/{ghost}/deactivate").status_code == 200
    assert err(transfer(w, w.tok("Eli"), cid, agent_id=w.id("Fay"))) == (403, "forbidden")  # not the owner
    assert err(transfer(w, alice, cid, agent_id=w.id("Fay"))) == (403, "forbidden")  # an end user
    assert err(transfer(w, dana, cid, agent_id=w.olga[0])) == (404, "not_found")  # another tenant's agent
    assert err(transfer(w, dana, cid, agent_id=ghost)) == (404, "not_found")  # deactivated
    assert err(transfer(w, dana, cid, agent_id="0" * 32)) == (404, "not_found")
    assert err(transfer(w, dana, cid, team_id=w.other_team)) == (404, "not_found")  # another tenant's team
    assert err(transfer(w, dana, cid, team_id="0" * 32)) == (404, "not_found")
    assert err(transfer(w, dana, cid))[0] in (400, 422)  # neither
    assert err(transfer(w, dana, cid, agent_id=w.id("Fay"), team_id=w.other_team))[0] in (400, 422)  # both
    assert err(transfer(w, w.olga[1], cid, agent_id=w.id("Fay"))) == (404, "not_found")
    # capacity: an agent with none free is refused, explicitly
    with w.client(w.admin) as a:
        full = a.post("/v1/agents", json={"name": "Ivy Full", "email": f"ivy-{w.tag}@x.io",
                                          "password": "correct horse battery", "max_concurrent": 1}).json()["id"]
    ivy = w.srv.token(full, role="agent", name="Ivy Full")
    _u2, _t2, busy = new_user(w, "Bob")
    with w.client(ivy) as c:
        assert c.post(f"/v1/conversations/{busy}/claim").status_code == 200
    assert err(transfer(w, dana, cid, agent_id=full)) == (409, "at_capacity")
    conv = next(c for c in history(w, dana, cid) if c["kind"] == "system")
    assert conv  # still Dana's: nothing was written by the refusals
    assert all(m["kind"] != "note" for m in history(w, dana, cid))


async def test_a_transfer_to_a_team_goes_to_its_online_member_or_waits_for_one(w: World) -> None:
    with w.client(w.admin) as a:
        team = a.post("/v1/teams", json={"name": f"Billing {w.tag}"}).json()["id"]
        assert a.put(f"/v1/teams/{team}/agents/{w.id('Fay')}").status_code == 200
        assert a.put(f"/v1/teams/{team}/agents/{w.id('Gus')}").status_code == 200
    _uid, _alice, cid = new_user(w)
    await asyncio.to_thread(claim, w, "Dana", cid)
    fay_ws = await WsClient.connect(w.srv.ws_url, w.tok("Fay"))
    eli_ws = await WsClient.connect(w.srv.ws_url, w.tok("Eli"))  # online, but not in the team
    try:
        r = await asyncio.to_thread(transfer, w, w.tok("Dana"), cid, team_id=team, comment="refund")
        assert r.status_code == 200, r.text
        assert r.json()["conversation"]["assignee"] == w.id("Fay")
    finally:
        await fay_ws.close()
        await eli_ws.close()
    assert any(m["kind"] == "note" and m["text"].endswith(f"to Fay Wong: refund (team Billing {w.tag})")
               for m in await asyncio.to_thread(history, w, w.tok("Fay"), cid))

    # nobody else of the team online: it waits in the queue for the team, not for Eli (online, not in
    # it) nor for Dana (in it, online, but the one who transferred it)
    with w.client(w.admin) as a:
        assert a.put(f"/v1/teams/{team}/agents/{w.id('Dana')}").status_code == 200
    _uid, _alice, cid2 = new_user(w)
    await asyncio.to_thread(claim, w, "Dana", cid2)
    eli_ws = await WsClient.connect(w.srv.ws_url, w.tok("Eli"))
    dana_ws = await WsClient.connect(w.srv.ws_url, w.tok("Dana"))
    try:
        r = await asyncio.to_thread(transfer, w, w.tok("Dana"), cid2, team_id=team)
        assert r.status_code == 200, r.text
        assert r.json()["conversation"]["status"] == "queued"
        gus_ws = await WsClient.connect(w.srv.ws_url, w.tok("Gus"))
        try:  # a member comes online and is given it
            await gus_ws.expect("conversation.updated", timeout=10)
            got = await asyncio.to_thread(lambda: wait_for(lambda: _conv(w, cid2)["assignee"] == w.id("Gus")))
            assert got
        finally:
            await gus_ws.close()
    finally:
        await eli_ws.close()
        await dana_ws.close()
    with w.client(w.admin) as a:
        assert a.delete(f"/v1/teams/{team}/agents/{w.id('Dana')}").status_code == 200


def _conv(w: World, cid: str) -> dict[str, Any]:
    with w.client(w.admin) as c:
        convs = c.get("/v1/conversations", params={"limit": 200}).json()["conversations"]
    return dict(next(x for x in convs if x["id"] == cid))


# ---- snooze ------------------------------------------------------------------------------------


def snooze_for(w: World, token: str, cid: str, seconds: float) -> httpx.Response:
    until = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
    with w.client(token) as c:
        return c.post(f"/v1/conversations/{cid}/snooze", json={"until": until})


def listed(w: World, token: str, cid: str, **params: Any) -> bool:
    with w.client(token) as c:
        return cid in {x["id"] for x in c.get("/v1/conversations", params={"limit": 200, **params})
                       .json()["conversations"]}


async def test_a_snoozed_conversation_leaves_the_list_and_comes_back_when_the_user_writes(w: World) -> None:
    _uid, alice, cid = new_user(w)
    await asyncio.to_thread(claim, w, "Dana", cid)
    r = await asyncio.to_thread(snooze_for, w, w.tok("Dana"), cid, 3600)
    assert r.status_code == 200, r.text
    assert r.json()["conversation"]["status"] == "snoozed" and r.json()["conversation"]["assignee"] == w.id("Dana")
    assert r.json()["snoozed_until"]
    assert not await asyncio.to_thread(listed, w, w.tok("Dana"), cid)  # out of the active list
    assert await asyncio.to_thread(listed, w, w.tok("Dana"), cid, status="snoozed")
    with w.client(w.tok("Eli")) as c:  # still Dana's
        r = c.post(f"/v1/conversations/{cid}/messages", json={"text": "mine?", "client_msg_id": str(uuid.uuid4())})
        assert err(r) == (403, "forbidden")
    dana_ws = await WsClient.connect(w.srv.ws_url, w.tok("Dana"))
    try:
        with w.client(alice) as c:
            r = c.post(f"/v1/conversations/{cid}/messages",
                       json={"text": "any news?", "client_msg_id": str(uuid.uuid4())})
            assert r.status_code == 201
        while True:
            f = await dana_ws.expect("conversation.updated", timeout=10)
            if f["conversation"]["id"] == cid:
                break
        assert (f["conversation"]["status"], f["conversation"]["assignee"]) == ("assigned", w.id("Dana"))
    finally:
        await dana_ws.close()
    assert await asyncio.to_thread(listed, w, w.tok("Dana"), cid)


async def test_a_snoozed_conversation_comes_back_at_its_time(w: World) -> None:
    _uid, _alice, cid = new_user(w)
    await asyncio.to_thread(claim, w, "Dana", cid)
    dana_ws = await WsClient.connect(w.srv.ws_url, w.tok("Dana"))
    try:
        r = await asyncio.to_thread(snooze_for, w, w.tok("Dana"), cid, 1.5)
        assert r.status_code == 200, r.text
        statuses = []
        while "assigned" not in statuses[1:]:
            f = await dana_ws.expect("conversation.updated", timeout=15)
            if f["conversation"]["id"] == cid:
                statuses.append(f["conversation"]["status"])
        assert statuses[0] == "snoozed"
    finally:
        await dana_ws.close()
    assert _conv(w, cid)["status"] == "assigned"


def test_snooze_refusals_and_an_early_wake(w: World) -> None:
    _uid, alice, cid = new_user(w)
    assert err(snooze_for(w, w.tok("Dana"), cid, 600)) == (403, "forbidden")  # not assigned (the AI has it)
    claim(w, "Dana", cid)
    assert err(snooze_for(w, w.tok("Eli"), cid, 600)) == (403, "forbidden")  # not theirs
    assert err(snooze_for(w, alice, cid, 600)) == (403, "forbidden")
    assert err(snooze_for(w, w.admin, cid, 600)) == (403, "forbidden")
    assert err(snooze_for(w, w.olga[1], cid, 600)) == (404, "not_found")
    assert err(snooze_for(w, w.tok("Dana"), cid, -5)) == (422, "validation_failed")
    assert err(snooze_for(w, w.tok("Dana"), cid, 400 * 86400)) == (422, "validation_failed")
    assert _conv(w, cid)["status"] == "assigned"
    assert snooze_for(w, w.tok("Dana"), cid, 600).status_code == 200
    with w.client(w.tok("Eli")) as c:
        assert err(c.post(f"/v1/conversations/{cid}/wake")) == (403, "forbidden")
    with w.client(w.tok("Dana")) as c:
        r = c.post(f"/v1/conversations/{cid}/wake")
        assert r.status_code == 200 and r.json()["conversation"]["status"] == "assigned"


# ---- routing rules -----------------------------------------------------------------------------


async def test_routing_rules_send_a_handoff_to_a_team_and_the_rest_to_anyone(w: World) -> None:
    with w.client(w.admin) as a:
        team = a.post("/v1/teams", json={"name": f"Invoices {w.tag}"}).json()["id"]
        assert a.put(f"/v1/teams/{team}/agents/{w.id('Hal')}").status_code == 200
        rule = a.post("/v1/routing-rules", json={"team_id": team, "kind": "topic", "keyword": f"invoice{w.tag}"})
        assert rule.status_code == 201, rule.text
        assert any(r["id"] == rule.json()["id"] for r in a.get("/v1/routing-rules").json()["routing_rules"])
        assert err(a.post("/v1/routing-rules", json={"team_id": w.other_team, "kind": "topic", "keyword": "x"})) \
            == (404, "not_found")
        assert err(a.post("/v1/routing-rules", json={"team_id": team, "kind": "topic"}))[0] == 422
        assert err(a.post("/v1/routing-rules", json={"team_id": team, "kind": "moon", "keyword": "x"}))[0] == 422
    with w.client(w.other_admin) as b:
        assert err(b.delete(f"/v1/routing-rules/{rule.json()['id']}")) == (404, "not_found")
    with w.client(w.tok("Eli")) as c:
        assert err(c.get("/v1/routing-rules")) == (403, "forbidden")

    hal_ws = await WsClient.connect(w.srv.ws_url, w.tok("Hal"))
    eli_ws = await WsClient.connect(w.srv.ws_url, w.tok("Eli"))
    try:
        _uid, alice, cid = await asyncio.to_thread(new_user, w)
        with w.client(alice) as c:
            r = c.post(f"/v1/conversations/{cid}/messages",
                       json={"text": f"my invoice{w.tag} is wrong", "client_msg_id": str(uuid.uuid4())})
            assert r.status_code == 201
            assert c.post(f"/v1/conversations/{cid}/handoff").status_code == 200
        assert await asyncio.to_thread(lambda: wait_for(lambda: _conv(w, cid)["assignee"] == w.id("Hal")))
        # no rule fits: anyone online may take it
        _uid, bob, cid2 = await asyncio.to_thread(new_user, w, "Bob")
        with w.client(bob) as c:
            assert c.post(f"/v1/conversations/{cid2}/handoff").status_code == 200
        assert await asyncio.to_thread(lambda: wait_for(lambda: _conv(w, cid2)["assignee"] is not None))
    finally:
        await hal_ws.close()
        await eli_ws.close()
    with w.client(w.admin) as a:
        assert a.delete(f"/v1/routing-rules/{rule.json()['id']}").status_code == 204
