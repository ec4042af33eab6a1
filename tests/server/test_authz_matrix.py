"""Authorization matrix: every REST route × role (admin, user, agent, anonymous) × ownership
(own, same tenant, other tenant). 0 unauthorized successes; another tenant's objects answer
exactly like missing ones (404 ``not_found``); a role that may not use a route gets 403."""

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from server.accounts.tenants import create_tenant
from tests.support.inproc import InProcServer, make_settings


@dataclass
class World:
    srv: InProcServer
    tokens: dict[str, str | None]
    ids: dict[str, str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data: Path = tmp_path_factory.mktemp("authz")
    srv = InProcServer(make_settings(data)).start()
    other = srv.call(create_tenant(srv.app.state.db, "Other Inc"))
    h_a = {"Authorization": f"Bearer {srv.admin_key}"}
    h_b = {"Authorization": f"Bearer {other.admin_key}"}
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        def tok(headers: dict[str, str], sub: str, role: str = "user") -> str:
            r = c.post("/v1/tokens", json={"sub": sub, "role": role}, headers=headers)
            r.raise_for_status()
            return str(r.json()["token"])

        def agent(headers: dict[str, str]) -> str:
            r = c.post("/v1/agents", json={"name": "Ag", "email": f"{uuid.uuid4().hex[:8]}@x.io",
                                           "password": "tall ladder purple"}, headers=headers)
            r.raise_for_status()
            return tok(headers, r.json()["id"], "agent")

        tokens: dict[str, str | None] = {
            "admin": srv.admin_key, "user": tok(h_a, "alice"), "user2": tok(h_a, "bob"), "agent": agent(h_a),
            "agent2": agent(h_a),
            "anon": None, "admin_b": other.admin_key, "user_b": tok(h_b, "carol"), "agent_b": agent(h_b),
        }
        ids: dict[str, str] = {}
        ua = {"Authorization": f"Bearer {tokens['user']}"}
        ids["conv"] = c.post("/v1/conversations", json={}, headers=ua).json()["conversation"]["id"]
        ids["msg"] = c.post(f"/v1/conversations/{ids['conv']}/messages", headers=ua,
                            json={"client_msg_id": str(uuid.uuid4()), "text": "mine"}).json()["message_id"]
        ub = {"Authorization": f"Bearer {tokens['user_b']}"}
        ids["conv_b"] = c.post("/v1/conversations", json={}, headers=ub).json()["conversation"]["id"]
        ids["kb_b"] = c.post("/v1/knowledge-bases", json={"name": "B"}, headers=h_b).json()["id"]
        ids["rule_b"] = c.post("/v1/push/rules", headers=h_b, json={
            "name": "r", "trigger_event": "x", "category": "marketing",
            "template": {"title": "t", "body": "b"}}).json()["id"]
    yield World(srv, tokens, ids)
    srv.stop()


def _call(w: World, who: str, method: str, path: str, body: Any = None) -> httpx.Response:
    path = path.format(**w.ids)
    headers = {"Authorization": f"Bearer {w.tokens[who]}"} if w.tokens[who] else {}
    with httpx.Client(base_url=w.srv.url, timeout=10) as c:
        return c.request(method, path, headers=headers, json=body)


ADMIN_ONLY = [
    ("POST", "/v1/tokens", {"sub": "x", "role": "user"}),
    ("POST", "/v1/agents", {"name": "n", "email": "n@x.io", "password": "tall ladder purple"}),
    ("PUT", "/v1/users/someone", {"name": "n"}),
    ("POST", "/v1/knowledge-bases", {"name": "k"}),
    ("GET", "/v1/knowledge-bases", None),
    ("POST", "/v1/bots", {"name": "b"}),
    ("GET", "/v1/bots", None),
    ("POST", "/v1/events", {"events": []}),
    ("GET", "/v1/push/rules", None),
    ("GET", "/v1/push/notifications?user_id=alice", None),
    ("GET", "/v1/admin/stats", None),
    ("GET", "/v1/agents", None),
    ("GET", "/v1/teams", None),
    ("POST", "/v1/teams", {"name": "t"}),
    ("GET", "/v1/tenant/identity", None),
    ("PUT", "/v1/tenant/identity", {"required": False}),
    ("POST", "/v1/tenant/identity/rotate", None),
    ("GET", "/v1/tenant/mfa", None),
    ("PUT", "/v1/tenant/mfa", {"required": True}),
    ("GET", "/v1/routing-rules", None),
    ("POST", "/v1/routing-rules", {"team_id": "0" * 32, "kind": "topic", "keyword": "k"}),
    ("DELETE", "/v1/routing-rules/x", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ONLY)
@pytest.mark.parametrize("who", ["user", "agent", "anon"])
def test_admin_routes_refuse_everyone_else(world: World, who: str, method: str, path: str, body: Any) -> None:
    r = _call(world, who, method, path, body)
    expected = 401 if who == "anon" else 403
    assert r.status_code == expected, r.text
    assert r.json()["error"]["code"] in ("auth_required", "forbidden")


OTHER_TENANT = [
    ("GET", "/v1/conversations/{conv}/messages", None),
    ("POST", "/v1/conversations/{conv}/messages", {"client_msg_id": str(uuid.uuid4()), "text": "hi"}),
    ("POST", "/v1/conversations/{conv}/handoff", None),
    ("POST", "/v1/conversations/{conv}/claim", None),
    ("POST", "/v1/conversations/{conv}/resolve", None),
    ("POST", "/v1/conversations/{conv}/handback", None),
    ("GET", "/v1/conversations/{conv}/suggestions", None),
    # the messages people expect (docs/protocol.md)
    ("PATCH", "/v1/conversations/{conv}/messages/{msg}", {"text": "changed"}),
    ("DELETE", "/v1/conversations/{conv}/messages/{msg}", None),
    ("GET", "/v1/conversations/{conv}/messages/{msg}/revisions", None),
    ("PUT", "/v1/conversations/{conv}/messages/{msg}/reactions/👍", None),
    ("DELETE", "/v1/conversations/{conv}/messages/{msg}/reactions/👍", None),
    ("GET", "/v1/conversations/{conv}/reads", None),
    ("POST", "/v1/conversations/{conv}/notes", {"client_msg_id": str(uuid.uuid4()), "text": "a note"}),
    ("POST", "/v1/conversations/{conv}/transfer", {"team_id": "0" * 32}),
    ("POST", "/v1/conversations/{conv}/snooze", {"until": "2999-01-01T00:00:00Z"}),
    ("POST", "/v1/conversations/{conv}/wake", None),
]
MESSAGE_ROUTES = OTHER_TENANT[7:13]  # (the desk operations after them are for agents only)
USER_MESSAGE_ROUTES = [r for r in MESSAGE_ROUTES if "revisions" not in r[1]]  # (the audit is 403 to every user)


@pytest.mark.parametrize(("method", "path", "body"), OTHER_TENANT)
@pytest.mark.parametrize("who", ["admin_b", "user_b", "agent_b"])
def test_another_tenants_conversation_looks_missing(world: World, who: str, method: str, path: str,
                                                   body: Any) -> None:
    r = _call(world, who, method, path, body)
    missing = _call(world, who, method, path.replace("{conv}", "0" * 32), body)
    assert r.status_code in (403, 404), r.text
    # Exactly like a conversation that does not exist (or a role refusal that ignores the id).
    assert (r.status_code, r.json()["error"]["code"]) == (missing.status_code, missing.json()["error"]["code"])


@pytest.mark.parametrize(("method", "path", "body"), OTHER_TENANT[:3] + USER_MESSAGE_ROUTES)
def test_another_users_conversation_looks_missing(world: World, method: str, path: str, body: Any) -> None:
    r = _call(world, "user2", method, path, body)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/knowledge-bases/{kb_b}/documents"),
    ("GET", "/v1/knowledge-bases/{kb_b}/search?q=hello"),
    ("DELETE", "/v1/knowledge-bases/{kb_b}/documents/x"),
    ("GET", "/v1/push/rules/{rule_b}"),
    ("GET", "/v1/push/rules/{rule_b}/stats"),
    ("DELETE", "/v1/push/rules/{rule_b}"),
])
def test_admin_of_one_tenant_cannot_reach_another(world: World, method: str, path: str) -> None:
    r = _call(world, "admin", method, path)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize(("who", "method", "path", "body"), [
    # another member's message: only its sender changes it; the audit is not for end users
    ("agent", "PATCH", "/v1/conversations/{conv}/messages/{msg}", {"text": "changed"}),
    ("agent", "DELETE", "/v1/conversations/{conv}/messages/{msg}", None),
    ("admin", "PATCH", "/v1/conversations/{conv}/messages/{msg}", {"text": "changed"}),
    ("admin", "DELETE", "/v1/conversations/{conv}/messages/{msg}", None),
    ("admin", "PUT", "/v1/conversations/{conv}/messages/{msg}/reactions/👍", None),
    ("user", "GET", "/v1/conversations/{conv}/messages/{msg}/revisions", None),
    ("anon", "PATCH", "/v1/conversations/{conv}/messages/{msg}", {"text": "changed"}),
    ("anon", "GET", "/v1/conversations/{conv}/reads", None),
])
def test_changes_to_a_message_are_refused_to_whoever_may_not_make_them(world: World, who: str, method: str,
                                                                       path: str, body: Any) -> None:
    r = _call(world, who, method, path, body)
    assert r.status_code == (401 if who == "anon" else 403), r.text
    assert "mine" in _texts(world, world.ids["conv"])  # unchanged


@pytest.mark.parametrize("action", ["claim", "resolve", "handback"])
def test_users_cannot_change_status_as_agents(world: World, action: str) -> None:
    r = _call(world, "user", "POST", f"/v1/conversations/{{conv}}/{action}")
    assert r.status_code == 403


def test_members_succeed(world: World) -> None:
    assert _call(world, "user", "GET", "/v1/conversations/{conv}/messages").status_code == 200
    assert _call(world, "agent", "GET", "/v1/conversations/{conv}/messages").status_code == 200
    assert _call(world, "admin", "GET", "/v1/conversations/{conv}/messages").status_code == 200
    mine = _call(world, "user", "GET", "/v1/conversations").json()["conversations"]
    assert [c["id"] for c in mine] == [world.ids["conv"]]
    assert _call(world, "user2", "GET", "/v1/conversations").json()["conversations"] == []
    assert world.ids["conv_b"] not in {c["id"] for c in _call(world, "admin", "GET", "/v1/conversations?limit=200")
                                       .json()["conversations"]}


# ---------------------------------------------------------------------------------------------
# Writing into a conversation: the owner rule that claim, resolve and handback follow
# ---------------------------------------------------------------------------------------------


def _new_conversation(w: World) -> str:
    r = _call(w, "user", "POST", "/v1/conversations", {})
    return str(r.json()["conversation"]["id"])


def _post(w: World, who: str, cid: str, text: str) -> httpx.Response:
    return _call(w, who, "POST", f"/v1/conversations/{cid}/messages",
                 {"client_msg_id": str(uuid.uuid4()), "text": text})


def _texts(w: World, cid: str) -> list[str]:
    return [m["text"] for m in _call(w, "admin", "GET", f"/v1/conversations/{cid}/messages").json()["messages"]]


def test_an_agent_cannot_write_into_another_agents_conversation_over_rest(world: World) -> None:
    cid = _new_conversation(world)
    assert _call(world, "agent", "POST", f"/v1/conversations/{cid}/claim").status_code == 200
    r = _post(world, "agent2", cid, "not yours")
    assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden")
    # Refused like resolve and handback are.
    for action in ("resolve", "handback"):
        assert _call(world, "agent2", "POST", f"/v1/conversations/{cid}/{action}").status_code == 403
    assert _post(world, "agent", cid, "mine").status_code == 201
    assert "not yours" not in _texts(world, cid) and "mine" in _texts(world, cid)


def test_an_agent_takes_an_unowned_conversation_by_writing(world: World) -> None:
    cid = _new_conversation(world)
    assert _post(world, "agent2", cid, "I'll take this").status_code == 201
    conv = next(c for c in _call(world, "agent2", "GET", "/v1/conversations?status=assigned&limit=200")
                .json()["conversations"] if c["id"] == cid)
    assert conv["assignee"] is not None
    assert _post(world, "agent", cid, "me too").json()["error"]["code"] == "forbidden"
    # Once resolved, only its last agent writes into it.
    assert _call(world, "agent2", "POST", f"/v1/conversations/{cid}/resolve").status_code == 200
    assert _post(world, "agent", cid, "late").status_code == 403
    assert _post(world, "agent2", cid, "follow-up").status_code == 201


async def _ws(w: World, who: str) -> Any:
    ws = await websockets.connect(w.srv.ws_url, open_timeout=10, ping_interval=None)
    await ws.send(json.dumps({"type": "hello", "token": w.tokens[who]}))
    assert json.loads(await ws.recv())["type"] == "welcome"
    return ws


async def _reply(ws: Any, ref: str) -> dict[str, Any]:
    """The frame that answers ``ref`` (other events on the way are skipped)."""
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame.get("ref") == ref:
            return frame


async def test_an_agent_cannot_write_into_another_agents_conversation_over_the_socket(world: World) -> None:
    cid = _new_conversation(world)
    assert _call(world, "agent", "POST", f"/v1/conversations/{cid}/claim").status_code == 200
    ws = await _ws(world, "agent2")
    await ws.send(json.dumps({"type": "send", "conversation_id": cid, "client_msg_id": str(uuid.uuid4()),
                              "text": "sneaky", "ref": "s"}))
    reply = await _reply(ws, "s")
    await ws.close()
    assert (reply["type"], reply["code"], reply["fatal"]) == ("error", "forbidden", False)
    assert "sneaky" not in _texts(world, cid)


# ---------------------------------------------------------------------------------------------
# Socket frames × who: another tenant's or another user's conversation looks missing
# ---------------------------------------------------------------------------------------------

WS_FRAMES = [
    {"type": "send", "text": "hi"},
    {"type": "subscribe"},
    {"type": "subscribe", "after_seq": 0},
    {"type": "unsubscribe"},
    {"type": "read", "seq": 0},
    {"type": "typing", "active": True},
    {"type": "handoff.request"},
    {"type": "message.edit", "message_id": "{msg}", "text": "changed"},
    {"type": "message.delete", "message_id": "{msg}"},
    {"type": "reaction.add", "message_id": "{msg}", "emoji": "👍"},
    {"type": "reaction.remove", "message_id": "{msg}", "emoji": "👍"},
]


@pytest.mark.parametrize("frame", WS_FRAMES, ids=lambda f: "-".join(str(v) for v in f.values()))
@pytest.mark.parametrize("who", ["user2", "user_b", "agent_b"])
async def test_socket_frames_on_a_conversation_not_theirs_look_missing(world: World, who: str,
                                                                       frame: dict[str, Any]) -> None:
    ws = await _ws(world, who)
    replies = []
    for n, cid in enumerate((world.ids["conv"], "0" * 32)):
        f = {**frame, "conversation_id": cid, "ref": f"r{n}"}
        if f["type"] == "send":
            f["client_msg_id"] = str(uuid.uuid4())
        if "message_id" in f:
            f["message_id"] = world.ids["msg"]
        await ws.send(json.dumps(f))
        replies.append(await _reply(ws, f"r{n}"))
    await ws.close()
    real, missing = replies
    assert (real["type"], real["code"]) == ("error", "not_found"), real
    assert (missing["type"], missing["code"]) == ("error", "not_found"), missing
    assert real["detail"] == missing["detail"]


def test_search_is_for_staff_and_never_crosses_tenants(world: World) -> None:
    word = "zebracorn" + uuid.uuid4().hex[:6]
    assert _post(world, "user", world.ids["conv"], f"my {word} is broken").status_code == 201
    for who, expected in (("user", 403), ("user_b", 403), ("anon", 401)):
        r = _call(world, who, "GET", f"/v1/search?q={word}")
        assert r.status_code == expected, r.text
    for who in ("admin_b", "agent_b"):
        r = _call(world, who, "GET", f"/v1/search?q={word}")
        assert (r.status_code, r.json()["results"]) == (200, []), r.text
    for who in ("admin", "agent"):
        r = _call(world, who, "GET", f"/v1/search?q={word}")
        # (the message, and any note quoting it, such as a handoff summary)
        assert {x["conversation_id"] for x in r.json()["results"]} == {world.ids["conv"]}, r.text
# ---------------------------------------------------------------------------------------------
# Private notes: for the tenant's agents only
# ---------------------------------------------------------------------------------------------


def test_an_end_user_never_reads_a_note(world: World) -> None:
    """Not by writing one, not in the history, not on the socket, not as a mention."""
    secret = f"note-{uuid.uuid4().hex}"
    r = _call(world, "agent", "POST", "/v1/conversations/{conv}/notes",
              {"client_msg_id": str(uuid.uuid4()), "text": f"{secret} @Ag"})
    assert r.status_code == 201, r.text
    for who in ("user", "user2", "user_b"):
        assert _call(world, who, "POST", "/v1/conversations/{conv}/notes",
                     {"client_msg_id": str(uuid.uuid4()), "text": "x"}).status_code in (403, 404)
        assert _call(world, who, "GET", "/v1/mentions").status_code == 403
        assert _call(world, who, "POST", f"/v1/mentions/{r.json()['message']['id']}/read").status_code == 403
    assert secret not in _call(world, "user", "GET", "/v1/conversations/{conv}/messages").text
    assert secret in _call(world, "agent2", "GET", "/v1/conversations/{conv}/messages").text
    assert secret not in _call(world, "agent_b", "GET", "/v1/mentions").text
    assert _call(world, "admin", "GET", "/v1/mentions").status_code == 403


async def test_an_end_user_socket_never_gets_a_note(world: World) -> None:
    ws = await _ws(world, "user")
    await ws.send(json.dumps({"type": "subscribe", "conversation_id": world.ids["conv"], "ref": "s"}))
    assert (await _reply(ws, "s"))["type"] == "subscribed"
    secret = f"note-{uuid.uuid4().hex}"
    assert _call(world, "agent", "POST", "/v1/conversations/{conv}/notes",
                 {"client_msg_id": str(uuid.uuid4()), "text": secret}).status_code == 201
    # a text message after it: the user's socket gets that one, and never the note before it
    assert _post(world, "user", world.ids["conv"], "after the note").status_code == 201
    seen: list[str] = []
    while True:
        raw = await asyncio.wait_for(ws.recv(), 10)
        seen.append(str(raw))
        frame = json.loads(raw)
        if frame.get("type") == "message" and frame["message"]["text"] == "after the note":
            break
    await ws.close()
    assert all(secret not in f for f in seen)
    # a resume from 0 replays the history without it
    ws = await websockets.connect(world.srv.ws_url, open_timeout=10, ping_interval=None)
    await ws.send(json.dumps({"type": "hello", "token": world.tokens["user"], "resume": {world.ids["conv"]: 0}}))
    replay: list[str] = []
    while True:
        raw = await asyncio.wait_for(ws.recv(), 10)
        replay.append(str(raw))
        if json.loads(raw).get("type") == "subscribed":
            break
    await ws.close()
    assert any("after the note" in f for f in replay) and all(secret not in f for f in replay)
