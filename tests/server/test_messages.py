"""The messages people expect, through the real server (uvicorn on loopback, real sockets), on
SQLite and PostgreSQL: edit and delete-for-everyone within the window (the audit kept, the other
side told live, the AI's context updated), quoted replies, emoji reactions from an allow-list,
read marks, and rich messages (quick replies, a card, a form)."""

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import select

from server.accounts.tenants import create_tenant
from server.chat.models import MessageReaction, MessageRevision
from server.chat.service import Sender
from server.core.models import Conversation, Message, utcnow
from tests.conftest import create_pg_database, drop_pg_database
from tests.server.attachment_files import PDF
from tests.support.inproc import InProcServer, make_settings
from tests.support.ws import WsClient


@dataclass
class World:
    srv: InProcServer
    dana: str  # an agent
    dana_id: str
    eli: str  # another agent
    other_user: str  # an end user of another tenant
    other_agent: str

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.srv.url, headers={"Authorization": f"Bearer {token}"}, timeout=20)

    def user(self, name: str = "Alice") -> str:
        return self.srv.token(f"{name.lower()}-{uuid.uuid4().hex[:8]}", name=name)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def w(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    url = asyncio.run(create_pg_database()) if request.param == "postgres" else None
    data: Path = tmp_path_factory.mktemp(f"messages-{request.param}")
    # The real rate limits (not tests.support.inproc.FAST): the new frames are limited like sends.
    srv = InProcServer(make_settings(data, url)).start().without_bot()
    try:
        other = srv.call(create_tenant(srv.app.state.db, "Other Inc"))
        dana_id, dana = srv.agent("Dana", f"dana-{uuid.uuid4().hex[:6]}@x.io")
        _eli_id, eli = srv.agent("Eli", f"eli-{uuid.uuid4().hex[:6]}@x.io")
        with httpx.Client(base_url=srv.url, timeout=10, headers={"Authorization": f"Bearer {other.admin_key}"}) as ob:
            r = ob.post("/v1/agents", json={"name": "Olga", "email": "olga@x.io", "password": "correct horse battery"})
            olga = ob.post("/v1/tokens", json={"sub": r.json()["id"], "role": "agent"}).json()["token"]
            carol = ob.post("/v1/tokens", json={"sub": "carol", "role": "user"}).json()["token"]
        yield World(srv, dana, dana_id, eli, carol, olga)
    finally:
        srv.stop()
        if url:
            asyncio.run(drop_pg_database(url))


def err(r: httpx.Response) -> tuple[int, str, str | None]:
    e = r.json()["error"]
    return r.status_code, e["code"], e.get("field")


def start(w: World, user: str) -> str:
    with w.client(user) as c:
        return str(c.post("/v1/conversations", json={}).json()["conversation"]["id"])


def post(w: World, token: str, cid: str, text: str, **extra: Any) -> httpx.Response:
    with w.client(token) as c:
        return c.post(f"/v1/conversations/{cid}/messages",
                      json={"client_msg_id": str(uuid.uuid4()), "text": text, **extra})


def history(w: World, token: str, cid: str) -> list[dict[str, Any]]:
    with w.client(token) as c:
        r = c.get(f"/v1/conversations/{cid}/messages")
    assert r.status_code == 200, r.text
    return list(r.json()["messages"])


def by_id(w: World, token: str, cid: str, mid: str) -> dict[str, Any]:
    return next(m for m in history(w, token, cid) if m["id"] == mid)


def count(w: World, model: Any, **where: Any) -> int:
    async def run() -> int:
        async with w.srv.app.state.db.session() as s:
            q = select(func.count()).select_from(model)
            for k, v in where.items():
                q = q.where(getattr(model, k) == v)
            return int((await s.exec(q)).one())
    return int(w.srv.call(run()))


def age(w: World, mid: str, seconds: int) -> None:
    """Make a message look ``seconds`` old (instead of waiting out the window)."""
    async def run() -> None:
        async with w.srv.app.state.db.write() as s:
            m = await s.get(Message, mid)
            assert m is not None
            m.created_at = utcnow() - timedelta(seconds=seconds)
            s.add(m)
    w.srv.call(run())


def tenant_of(w: World, cid: str) -> str:
    async def run() -> str:
        async with w.srv.app.state.db.session() as s:
            conv = await s.get(Conversation, cid)
            assert conv is not None
            return conv.tenant_id
    return str(w.srv.call(run()))


def bot_message(w: World, cid: str, text: str) -> str:
    """A message of the AI agent (the conversations here have none; it is written as the bot's)."""
    async def run() -> str:
        async with w.srv.app.state.db.write() as s:
            conv = await s.get(Conversation, cid)
            assert conv is not None
            conv.last_seq += 1
            m = Message(tenant_id=conv.tenant_id, conversation_id=cid, seq=conv.last_seq, sender_kind="bot",
                        sender_id="bot-1", sender_name="Assistant", text=text)
            s.add(conv)
            s.add(m)
            return m.id
    return str(w.srv.call(run()))


async def agent_watching(w: World, token: str, cid: str) -> WsClient:
    ws = await WsClient.connect(w.srv.ws_url, token)
    await ws.send({"type": "subscribe", "conversation_id": cid, "ref": "sub"})
    await ws.expect("subscribed", ref="sub")
    return ws


# ---- edit and delete ---------------------------------------------------------------------------


async def test_an_edit_reaches_the_other_side_live_and_keeps_the_original_for_the_audit(w: World) -> None:
    alice = w.user()
    cid = start(w, alice)
    user = await WsClient.connect(w.srv.ws_url, alice)
    agent = await agent_watching(w, w.dana, cid)
    try:
        ack = await user.say(cid, "My order 1234 is late")
        await agent.expect("message", conversation_id=cid)
        await user.send({"type": "message.edit", "conversation_id": cid, "message_id": ack["message_id"],
                         "text": "My order 1243 is late", "ref": "e"})
        answer = await user.expect("message.edited", ref="e")
        seen = await agent.expect("message.edited", conversation_id=cid)
    finally:
        await user.close()
        await agent.close()
    assert answer["message"]["text"] == seen["message"]["text"] == "My order 1243 is late"
    assert seen["message"]["id"] == ack["message_id"] and seen["message"]["seq"] == ack["seq"]
    assert seen["message"]["edited_at"]
    # history says so too, to every side
    for token in (alice, w.dana):
        m = by_id(w, token, cid, ack["message_id"])
        assert (m["text"], bool(m["edited_at"])) == ("My order 1243 is late", True)
    # the audit: agents and admins read every earlier text, end users do not
    with w.client(w.dana) as c:
        revs = c.get(f"/v1/conversations/{cid}/messages/{ack['message_id']}/revisions").json()["revisions"]
    assert [(r["action"], r["text"]) for r in revs] == [("edit", "My order 1234 is late")]
    assert revs[0]["actor"]["kind"] == "user"
    with w.client(alice) as c:
        assert err(c.get(f"/v1/conversations/{cid}/messages/{ack['message_id']}/revisions"))[:2] == (403, "forbidden")
    # the same text again changes nothing
    with w.client(alice) as c:
        r = c.patch(f"/v1/conversations/{cid}/messages/{ack['message_id']}", json={"text": "My order 1243 is late"})
    assert r.status_code == 200, r.text
    assert count(w, MessageRevision, message_id=ack["message_id"]) == 1


async def test_a_delete_for_everyone_blanks_the_message_everywhere_but_the_audit(w: World) -> None:
    alice = w.user()
    cid = start(w, alice)
    user = await WsClient.connect(w.srv.ws_url, alice)
    agent = await agent_watching(w, w.dana, cid)
    try:
        ack = await user.say(cid, "my password is hunter2")
        await agent.expect("message", conversation_id=cid)
        await user.send({"type": "message.delete", "conversation_id": cid, "message_id": ack["message_id"],
                         "ref": "d"})
        answer = await user.expect("message.deleted", ref="d")
        seen = await agent.expect("message.deleted", conversation_id=cid)
        # and a second device of the user that resumes from before it gets it as deleted
        late = await WsClient.connect(w.srv.ws_url, alice, resume={cid: 0})
        replayed = await late.expect("message", seq=ack["seq"])
        await late.close()
    finally:
        await user.close()
        await agent.close()
    assert answer["message_id"] == seen["message_id"] == ack["message_id"] and seen["seq"] == ack["seq"]
    assert replayed["message"]["deleted"] is True and replayed["message"]["text"] == ""
    m = by_id(w, w.dana, cid, ack["message_id"])
    assert (m["deleted"], m["text"]) == (True, "")
    assert "hunter2" not in json.dumps(history(w, alice, cid))
    with w.client(w.dana) as c:
        revs = c.get(f"/v1/conversations/{cid}/messages/{ack['message_id']}/revisions").json()["revisions"]
    assert [(r["action"], r["text"]) for r in revs] == [("delete", "my password is hunter2")]
    with w.client(alice) as c:  # deleted is final
        r = c.patch(f"/v1/conversations/{cid}/messages/{ack['message_id']}", json={"text": "again"})
        assert err(r)[:2] == (409, "message_deleted")
        assert err(c.delete(f"/v1/conversations/{cid}/messages/{ack['message_id']}"))[:2] == (409, "message_deleted")
        r = c.put(f"/v1/conversations/{cid}/messages/{ack['message_id']}/reactions/👍")
        assert err(r)[:2] == (409, "message_deleted")


def test_the_files_of_a_deleted_message_are_served_no_more(w: World) -> None:
    alice = w.user()
    cid = start(w, alice)
    with w.client(alice) as c:
        up = c.post(f"/v1/conversations/{cid}/attachments", files={"file": ("steps.pdf", PDF, "application/pdf")})
        assert up.status_code == 201, up.text
        aid = up.json()["attachment"]["id"]
        sent = c.post(f"/v1/conversations/{cid}/messages",
                      json={"client_msg_id": str(uuid.uuid4()), "text": "see the file", "attachments": [aid]}).json()
        assert c.get(f"/v1/attachments/{aid}").status_code == 200
        assert c.delete(f"/v1/conversations/{cid}/messages/{sent['message_id']}").status_code == 200
        assert err(c.get(f"/v1/attachments/{aid}"))[:2] == (404, "not_found")
    with w.client(w.dana) as c:
        assert err(c.get(f"/v1/attachments/{aid}"))[:2] == (404, "not_found")
        revs = c.get(f"/v1/conversations/{cid}/messages/{sent['message_id']}/revisions").json()["revisions"]
    assert revs[0]["attachments"][0]["id"] == aid  # the audit still says what was sent
    assert "attachments" not in by_id(w, alice, cid, sent["message_id"])


def test_edits_that_are_not_allowed_are_refused_and_change_nothing(w: World) -> None:
    alice = w.user()
    cid = start(w, alice)
    mine = post(w, alice, cid, "first words").json()["message_id"]
    old = post(w, alice, cid, "said long ago").json()["message_id"]
    age(w, old, 16 * 60)  # past the 15 min default window
    bot = bot_message(w, cid, "a bot's answer")
    agents = post(w, w.dana, cid, "an agent's reply").json()["message_id"]

    def patch(token: str, mid: str, conv: str = cid) -> tuple[int, str, str | None]:
        with w.client(token) as c:
            return err(c.patch(f"/v1/conversations/{conv}/messages/{mid}", json={"text": "changed"}))

    def remove(token: str, mid: str) -> tuple[int, str, str | None]:
        with w.client(token) as c:
            return err(c.delete(f"/v1/conversations/{cid}/messages/{mid}"))

    assert patch(alice, old)[:2] == remove(alice, old)[:2] == (409, "edit_window_closed")
    assert patch(w.dana, mine)[:2] == remove(w.dana, mine)[:2] == (403, "forbidden")  # someone else's
    assert patch(alice, agents)[:2] == (403, "forbidden")
    assert patch(w.eli, agents)[:2] == (403, "forbidden")  # another agent's
    assert patch(alice, bot)[:2] == patch(w.dana, bot)[:2] == remove(w.dana, bot)[:2] == (403, "forbidden")
    assert patch(w.srv.admin_key, mine)[:2] == (403, "forbidden")
    assert patch(w.other_agent, mine)[:2] == patch(w.other_user, mine)[:2] == (404, "not_found")  # another tenant
    assert patch(w.user("Bob"), mine)[:2] == (404, "not_found")  # another user of the tenant
    assert patch(alice, "0" * 32)[:2] == (404, "not_found")
    other_cid = start(w, alice)
    assert patch(alice, mine, other_cid)[:2] == (404, "not_found")  # a message of another conversation
    with w.client(alice) as c:
        assert err(c.patch(f"/v1/conversations/{cid}/messages/{mine}", json={"text": "  "}))[:2] == (
            422, "empty_message")
        assert err(c.patch(f"/v1/conversations/{cid}/messages/{mine}", json={"text": "x" * 4001}))[:2] == (
            413, "too_long")
    texts = {m["id"]: m["text"] for m in history(w, w.dana, cid)}
    assert texts == {mine: "first words", old: "said long ago", agents: "an agent's reply", bot: "a bot's answer"}
    assert count(w, MessageRevision, conversation_id=cid) == 0
    # the owner within the window may
    with w.client(w.dana) as c:
        assert c.patch(f"/v1/conversations/{cid}/messages/{agents}", json={"text": "fixed"}).status_code == 200


async def test_a_refused_edit_over_the_socket_says_why(w: World) -> None:
    alice = w.user()
    cid = start(w, alice)
    old = post(w, alice, cid, "old words").json()["message_id"]
    age(w, old, 3600)
    ws = await WsClient.connect(w.srv.ws_url, alice)
    try:
        await ws.send({"type": "message.edit", "conversation_id": cid, "message_id": old, "text": "new",
                       "ref": "late"})
        late = await ws.expect("error", ref="late")
        await ws.send({"type": "message.edit", "conversation_id": cid, "message_id": old, "ref": "notext"})
        notext = await ws.expect("error", field="text")  # refused while parsing: before its ref is read
    finally:
        await ws.close()
    assert (late["code"], late["fatal"]) == ("edit_window_closed", False)
    assert (notext["code"], notext["field"]) == ("validation_failed", "text")


def test_the_ai_context_follows_edits_and_deletes(w: World) -> None:
    """The AI's history and the handoff summary are read from the messages as they are now."""
    alice = w.user()
    cid = start(w, alice)
    kept = post(w, alice, cid, "How do I reset my router?").json()["message_id"]
    gone = post(w, alice, cid, "my card number is 4111 1111 1111 1111").json()["message_id"]
    with w.client(alice) as c:
        assert c.patch(f"/v1/conversations/{cid}/messages/{kept}",
                       json={"text": "How do I reset my modem?"}).status_code == 200
        assert c.delete(f"/v1/conversations/{cid}/messages/{gone}").status_code == 200
    summary = w.srv.call(w.srv.app.state.bot_runner.summary(tenant_of(w, cid), cid))
    assert "reset my modem" in summary
    assert "router" not in summary and "4111" not in summary


# ---- quoted replies --------------------------------------------------------------------------------


async def test_a_quoted_reply_shows_its_quote_on_the_other_side_and_follows_its_changes(w: World) -> None:
    alice = w.user()
    cid = start(w, alice)
    asked = post(w, alice, cid, "Which plan includes backups?").json()["message_id"]
    user = await WsClient.connect(w.srv.ws_url, alice)
    agent = await agent_watching(w, w.dana, cid)
    try:
        cmid = str(uuid.uuid4())
        await agent.send({"type": "send", "conversation_id": cid, "client_msg_id": cmid, "text": "The Pro plan.",
                          "reply_to": asked})
        ack = await agent.expect("ack", client_msg_id=cmid)
        got = await user.expect("message", seq=ack["seq"])
    finally:
        await user.close()
        await agent.close()
    quote = got["message"]["reply_to"]
    assert (quote["id"], quote["text"], quote["sender"]["kind"]) == (asked, "Which plan includes backups?", "user")
    assert got["message"]["id"] == ack["message_id"]
    # the same send again is the same message (idempotent)
    with w.client(w.dana) as c:
        again = c.post(f"/v1/conversations/{cid}/messages",
                       json={"client_msg_id": cmid, "text": "The Pro plan.", "reply_to": asked}).json()
    assert again["duplicate"] is True and again["message_id"] == ack["message_id"]
    # the quote follows an edit, and a delete
    with w.client(alice) as c:
        c.patch(f"/v1/conversations/{cid}/messages/{asked}", json={"text": "Which plan has backups?"})
    assert by_id(w, alice, cid, ack["message_id"])["reply_to"]["text"] == "Which plan has backups?"
    with w.client(alice) as c:
        c.delete(f"/v1/conversations/{cid}/messages/{asked}")
    q = by_id(w, w.dana, cid, ack["message_id"])["reply_to"]
    assert (q["deleted"], q["text"]) == (True, "")


def test_a_reply_to_a_message_of_another_conversation_is_not_found_and_not_stored(w: World) -> None:
    alice = w.user()
    cid, elsewhere = start(w, alice), start(w, alice)
    theirs = post(w, w.other_user, start(w, w.other_user), "another tenant").json()["message_id"]
    foreign = post(w, alice, elsewhere, "in another conversation").json()["message_id"]
    before = len(history(w, alice, cid))
    for target in (foreign, theirs, "0" * 32):
        assert err(post(w, alice, cid, "a reply", reply_to=target)) == (404, "not_found", "reply_to")
    assert len(history(w, alice, cid)) == before
    # a note cannot be quoted where the end user reads it
    note = w.srv.call(w.srv.app.state.chat.send(tenant_of(w, cid), cid, Sender("system", "system", "Summary"),
                                                "agents only", kind="note")).message.id
    assert err(post(w, w.dana, cid, "quoting a note", reply_to=note)) == (404, "not_found", "reply_to")


# ---- reactions -------------------------------------------------------------------------------------


async def test_reactions_count_one_per_person_per_emoji_live_and_in_history(w: World) -> None:
    alice = w.user()
    cid = start(w, alice)
    mid = post(w, alice, cid, "Thanks, that fixed it!").json()["message_id"]
    user = await WsClient.connect(w.srv.ws_url, alice)
    agent = await agent_watching(w, w.dana, cid)
    try:
        await agent.send({"type": "reaction.add", "conversation_id": cid, "message_id": mid, "emoji": "🎉",
                          "ref": "a1"})
        assert (await agent.expect("message.reaction", ref="a1"))["count"] == 1
        live = await user.expect("message.reaction", conversation_id=cid)
        assert (live["emoji"], live["count"], live["active"], live["participant"]["kind"]) == ("🎉", 1, True, "agent")
        await user.send({"type": "reaction.add", "conversation_id": cid, "message_id": mid, "emoji": "🎉", "ref": "u"})
        await agent.expect("message.reaction", conversation_id=cid, count=2)
        await agent.send({"type": "reaction.add", "conversation_id": cid, "message_id": mid, "emoji": "🎉",
                          "ref": "a2"})
        assert (await agent.expect("message.reaction", ref="a2"))["count"] == 2  # once per person
    finally:
        await user.close()
        await agent.close()
    assert by_id(w, alice, cid, mid)["reactions"] == [{"emoji": "🎉", "count": 2, "mine": True}]
    with w.client(w.eli) as c:
        assert by_id(w, w.eli, cid, mid)["reactions"] == [{"emoji": "🎉", "count": 2, "mine": False}]
        r = c.put(f"/v1/conversations/{cid}/messages/{mid}/reactions/👍")
        assert (r.status_code, r.json()["count"]) == (200, 1)
    with w.client(w.dana) as c:
        r = c.delete(f"/v1/conversations/{cid}/messages/{mid}/reactions/🎉")
        assert (r.status_code, r.json()["count"], r.json()["active"]) == (200, 1, False)
    assert by_id(w, w.dana, cid, mid)["reactions"] == [{"emoji": "👍", "count": 1, "mine": False},
                                                      {"emoji": "🎉", "count": 1, "mine": False}]


async def test_an_unknown_emoji_of_10_kb_is_refused_clearly_and_nothing_is_stored(w: World) -> None:
    alice = w.user()
    cid = start(w, alice)
    mid = post(w, alice, cid, "hello").json()["message_id"]
    huge = "🦄" * 2500 + "x" * 240  # 10 KB of UTF-8
    assert len(huge.encode()) >= 10_000
    ws = await WsClient.connect(w.srv.ws_url, alice)
    try:
        await ws.send({"type": "reaction.add", "conversation_id": cid, "message_id": mid, "emoji": huge, "ref": "h"})
        frame = await ws.expect("error", ref="h")
        await ws.send({"type": "reaction.add", "conversation_id": cid, "message_id": mid, "emoji": "🦄", "ref": "u"})
        unicorn = await ws.expect("error", ref="u")
    finally:
        await ws.close()
    assert (frame["code"], frame["field"], frame["fatal"]) == ("validation_failed", "emoji", False)
    assert "🦄" not in frame["detail"] and len(frame["detail"]) < 200  # what was sent is not echoed
    assert (unicorn["code"], unicorn["field"]) == ("validation_failed", "emoji")
    with w.client(alice) as c:
        assert err(c.put(f"/v1/conversations/{cid}/messages/{mid}/reactions/" + "x" * 10_240)) == (
            422, "validation_failed", "emoji")
    assert count(w, MessageReaction, message_id=mid) == 0


async def test_reaction_frames_are_rate_limited_like_sends(w: World) -> None:
    alice = w.user()
    cid = start(w, alice)
    mid = post(w, alice, cid, "hello").json()["message_id"]
    ws = await WsClient.connect(w.srv.ws_url, alice)
    try:
        # more than the connection's burst (30), sent at once
        for n in range(80):
            await ws.send({"type": "reaction.add" if n % 2 else "reaction.remove", "conversation_id": cid,
                           "message_id": mid, "emoji": "👍", "ref": f"r{n}"})
        answers = [await ws.expect_any(f"r{n}") for n in range(80)]
    finally:
        await ws.close()
    limited = [a for a in answers if a["type"] == "error"]
    assert limited and {a["code"] for a in limited} == {"rate_limited"}
    assert all(a.get("retry_after_ms") for a in limited)


# ---- read marks and rich messages ------------------------------------------------------------------


async def test_read_marks_reach_the_other_side_and_stay_for_later(w: World) -> None:
    alice = w.user()
    cid = start(w, alice)
    reply = post(w, w.dana, cid, "Hi, Dana here").json()
    user = await WsClient.connect(w.srv.ws_url, alice)
    agent = await agent_watching(w, w.dana, cid)
    try:
        await user.send({"type": "read", "conversation_id": cid, "seq": reply["seq"]})
        seen = await agent.expect("read", conversation_id=cid)
    finally:
        await user.close()
        await agent.close()
    assert (seen["participant"]["kind"], seen["seq"]) == ("user", reply["seq"])
    with w.client(w.dana) as c:
        marks = c.get(f"/v1/conversations/{cid}/reads").json()["reads"]
    assert {"participant": {"kind": "user", "id": seen["participant"]["id"]}, "seq": reply["seq"]} in marks
    assert {"participant": {"kind": "agent", "id": w.dana_id}, "seq": reply["seq"]} in marks  # sending is reading
    with w.client(w.other_agent) as c:
        assert err(c.get(f"/v1/conversations/{cid}/reads"))[:2] == (404, "not_found")


async def test_an_agent_sends_quick_replies_a_card_and_a_form_and_the_user_sees_them(w: World) -> None:
    alice = w.user()
    cid = start(w, alice)
    rich = {"quick_replies": [{"label": "Yes", "value": "Yes please"}, {"label": "No", "value": "No thanks"}],
            "card": {"title": "Backups guide", "url": "https://example.com/backups", "text": "How to turn them on"},
            "form": {"title": "Your details", "fields": [{"name": "email", "label": "Email", "type": "email",
                                                          "required": True}]}}
    user = await WsClient.connect(w.srv.ws_url, alice)
    try:
        sent = post(w, w.dana, cid, "Shall I turn backups on?", rich=rich)
        assert sent.status_code == 201, sent.text
        got = await user.expect("message", seq=sent.json()["seq"])
    finally:
        await user.close()
    assert got["message"]["rich"]["quick_replies"][0] == {"label": "Yes", "value": "Yes please"}
    assert got["message"]["rich"]["card"]["url"] == "https://example.com/backups"
    assert got["message"]["rich"]["form"]["fields"][0]["name"] == "email"
    before = len(history(w, alice, cid))
    for bad in ({"card": {"title": "x", "url": "javascript:alert(1)"}}, {"card": {"title": "x", "url": "ftp://h/x"}},
                {"quick_replies": [{"label": "a", "value": "b"}] * 11}, {}, {"buttons": []}):
        assert err(post(w, w.dana, cid, "bad", rich=bad))[:2] == (422, "validation_failed"), bad
    assert err(post(w, alice, cid, "me too", rich={"quick_replies": [{"label": "a", "value": "b"}]}))[:2] == (
        403, "forbidden")
    assert len(history(w, alice, cid)) == before
