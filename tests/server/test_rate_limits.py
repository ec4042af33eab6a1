"""One limiter for every entry point: socket frames (send, subscribe with its replay, read,
typing), REST message posts, widget sessions and sockets that never say hello. A refused
request answers ``rate_limited`` with ``retry_after_ms`` (REST: 429 + Retry-After) and stores
nothing; the buckets are shared per user between the socket and REST, and per tenant."""

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlmodel import func, select

from server.accounts.tenants import create_tenant
from server.chat.service import Sender
from server.core.models import User
from server.core.ratelimit import Charge, MemoryLimiter, RedisLimiter, Rule, client_ip
from tests.support.inproc import InProcServer, make_settings
from tests.support.live import free_port

# ---------------------------------------------------------------------------------------------
# The limiter itself
# ---------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_every_charge_is_taken_or_none() -> None:
    clock = Clock()
    lim = MemoryLimiter(clock=clock)
    user, tenant = Rule("user", 1.0, 3), Rule("tenant", 1.0, 2)
    assert await lim.take(Charge(user, "a"), Charge(tenant, "t")) == 0
    assert await lim.take(Charge(user, "a"), Charge(tenant, "t")) == 0
    # The tenant is out: refused, and user "a" keeps the token it would have paid.
    assert await lim.take(Charge(user, "a"), Charge(tenant, "t")) == 1000
    assert await lim.take(Charge(user, "a")) == 0
    assert await lim.take(Charge(user, "a")) == 1000  # empty now: 1 s for the next token
    clock.now += 1.0
    assert await lim.take(Charge(user, "a")) == 0


async def test_a_cost_above_the_burst_waits_for_a_full_bucket() -> None:
    clock = Clock()
    lim = MemoryLimiter(clock=clock)
    replay = Rule("replay", 100.0, 50)
    assert await lim.take(Charge(replay, "u", 10_000)) == 0  # capped at the burst: a full bucket pays
    assert await lim.take(Charge(replay, "u", 10_000)) == 500
    clock.now += 0.5
    assert await lim.take(Charge(replay, "u", 1)) == 0


async def test_memory_stays_bounded_under_a_flood_of_keys() -> None:
    lim = MemoryLimiter(max_keys=100)
    rule = Rule("ip", 1.0, 1)
    for i in range(10_000):
        await lim.take(Charge(rule, f"10.0.{i // 256}.{i % 256}"))
    assert len(lim._buckets) == 100


@pytest.mark.redis
async def test_redis_buckets_are_shared_by_nodes_and_all_or_nothing(redis_url: str) -> None:
    prefix = f"parley:rl:test:{uuid.uuid4().hex[:8]}:"
    a, b = RedisLimiter(redis_url, prefix=prefix), RedisLimiter(redis_url, prefix=prefix)
    user, tenant = Rule("user", 0.001, 3), Rule("tenant", 0.001, 4)
    try:
        assert await a.take(Charge(user, "x"), Charge(tenant, "t")) == 0
        assert await b.take(Charge(user, "x"), Charge(tenant, "t")) == 0
        assert await a.take(Charge(user, "x"), Charge(tenant, "t")) == 0
        # "x" is out on every node; the refusal costs the tenant nothing.
        assert await b.take(Charge(user, "x"), Charge(tenant, "t")) > 0
        assert await b.take(Charge(user, "y"), Charge(tenant, "t")) == 0
        assert await a.take(Charge(user, "z"), Charge(tenant, "t")) > 0
    finally:
        await a.close()
        await b.close()


async def test_without_redis_each_node_still_limits() -> None:
    clock = Clock()
    lim = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0", clock=clock)
    calls = 0
    script = lim._script

    async def counted(**kw: Any) -> Any:
        nonlocal calls
        calls += 1
        return await script(**kw)

    lim._script = counted
    rule = Rule("user", 0.001, 2)
    try:
        assert [await lim.take(Charge(rule, "x")) == 0 for _ in range(3)] == [True, True, False]
        assert calls == 1  # a failed Redis is left alone for a while, not asked per frame
        clock.now += 10
        await lim.take(Charge(rule, "y"))
        assert calls == 2
    finally:
        await lim.close()


def test_the_client_address_behind_trusted_proxies() -> None:
    headers = {"x-forwarded-for": "6.6.6.6, 1.2.3.4, 10.0.0.2"}
    assert client_ip(("10.0.0.9", 1), headers, 0) == "10.0.0.9"  # forwarded headers are not trusted
    assert client_ip(("10.0.0.9", 1), headers, 1) == "10.0.0.2"
    assert client_ip(("10.0.0.9", 1), headers, 2) == "1.2.3.4"
    assert client_ip(None, {}, 0) == "unknown"


# ---------------------------------------------------------------------------------------------
# Every entry point of a live server
# ---------------------------------------------------------------------------------------------

LIMITS: dict[str, Any] = {
    "rate_per_user": 0.01, "burst_per_user": 5,
    "rate_per_tenant": 0.01, "burst_per_tenant": 12,
    "rate_replay_per_user": 0.01, "burst_replay_per_user": 50,
    "rate_widget_sessions_per_ip": 0.001, "burst_widget_sessions_per_ip": 3,
    "max_pending_handshakes_per_ip": 3,
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcServer]:
    data: Path = tmp_path_factory.mktemp("ratelimits")
    with InProcServer(make_settings(data, **LIMITS)) as server:
        yield server


def _tenant(srv: InProcServer) -> tuple[str, str, str]:
    """A tenant of the test's own (tenant buckets are per tenant): (id, admin key, widget key)."""
    created = srv.call(create_tenant(srv.app.state.db, f"T-{uuid.uuid4().hex[:6]}"))
    return created.tenant.id, created.admin_key, created.tenant.widget_key


def _token(srv: InProcServer, admin_key: str, sub: str) -> str:
    r = httpx.post(srv.url + "/v1/tokens", json={"sub": sub, "role": "user"},
                   headers={"Authorization": f"Bearer {admin_key}"}, timeout=10)
    r.raise_for_status()
    return str(r.json()["token"])


def _client(srv: InProcServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def _post(c: httpx.Client, cid: str, text: str) -> httpx.Response:
    return c.post(f"/v1/conversations/{cid}/messages", json={"client_msg_id": str(uuid.uuid4()), "text": text})


def _user_texts(c: httpx.Client, cid: str) -> list[str]:
    msgs = c.get(f"/v1/conversations/{cid}/messages", params={"limit": 200}).json()["messages"]
    return [m["text"] for m in msgs if m["sender"]["kind"] == "user"]


async def _hello(srv: InProcServer, token: str, resume: dict[str, int] | None = None) -> Any:
    ws = await websockets.connect(srv.ws_url, open_timeout=10, ping_interval=None)
    await ws.send(json.dumps({"type": "hello", "token": token, **({"resume": resume} if resume else {})}))
    assert json.loads(await ws.recv())["type"] == "welcome"
    return ws


async def _frames(ws: Any, until_ref: str, timeout: float = 10) -> list[dict[str, Any]]:
    """Frames up to and including the answer to a ping with ``until_ref`` (a pong, or a
    refusal once the user's bucket is empty)."""
    await ws.send(json.dumps({"type": "ping", "ref": until_ref}))
    out = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        out.append(frame)
        if frame.get("ref") == until_ref:
            return out


def test_rest_posts_are_limited_per_user_and_nothing_refused_is_stored(srv: InProcServer) -> None:
    _tid, admin, _wk = _tenant(srv)
    with _client(srv, _token(srv, admin, "rest-flood")) as c:
        cid = c.post("/v1/conversations", json={}).json()["conversation"]["id"]
        answers = [_post(c, cid, f"m{i}") for i in range(10)]
        assert [r.status_code for r in answers] == [201] * 5 + [429] * 5
        refused = answers[-1]
        err = refused.json()["error"]
        assert err["code"] == "rate_limited" and err["retry_after_ms"] > 0
        assert int(refused.headers["Retry-After"]) >= err["retry_after_ms"] / 1000
        assert _user_texts(c, cid) == [f"m{i}" for i in range(5)]


async def test_the_socket_and_rest_share_one_bucket_per_user(srv: InProcServer) -> None:
    _tid, admin, _wk = _tenant(srv)
    token = _token(srv, admin, "shared")
    with _client(srv, token) as c:
        cid = c.post("/v1/conversations", json={}).json()["conversation"]["id"]
        assert all(_post(c, cid, f"rest{i}").status_code == 201 for i in range(5))
        ws = await _hello(srv, token)
        await ws.send(json.dumps({"type": "send", "conversation_id": cid, "client_msg_id": str(uuid.uuid4()),
                                  "text": "ws", "ref": "s"}))
        reply = next(f for f in await _frames(ws, "end") if f.get("ref") == "s")
        await ws.close()
        assert (reply["type"], reply["code"]) == ("error", "rate_limited") and reply["retry_after_ms"] > 0
        assert "ws" not in _user_texts(c, cid)


def test_a_tenant_has_one_bucket_for_all_its_users(srv: InProcServer) -> None:
    _tid, admin, _wk = _tenant(srv)
    codes = []
    for n in range(3):
        with _client(srv, _token(srv, admin, f"member-{n}")) as c:
            cid = c.post("/v1/conversations", json={}).json()["conversation"]["id"]
            codes += [_post(c, cid, f"t{n}-{i}").status_code for i in range(5)]
    # Each user stayed within its own 5, but the tenant allows 12 in all.
    assert codes.count(201) == 12 and codes[-3:] == [429] * 3


async def test_subscribe_replays_are_paid_per_message(srv: InProcServer) -> None:
    tid, admin, _wk = _tenant(srv)
    token = _token(srv, admin, "replayer")
    with _client(srv, token) as c:
        cid = c.post("/v1/conversations", json={}).json()["conversation"]["id"]
        chat = srv.app.state.chat
        for i in range(30):
            srv.call(chat.send(tid, cid, Sender("system", "system", "Parley"), f"history {i}", kind="system"))
    ws = await _hello(srv, token)
    await ws.send(json.dumps({"type": "subscribe", "conversation_id": cid, "after_seq": 0, "ref": "a"}))
    first = await _frames(ws, "a-end")
    assert len([f for f in first if f["type"] == "message"]) == 30
    # 50 messages a user may replay at once: 30 were, the next 30 are refused and none is sent.
    await ws.send(json.dumps({"type": "subscribe", "conversation_id": cid, "after_seq": 0, "ref": "b"}))
    second = await _frames(ws, "b-end")
    await ws.close()
    assert [f for f in second if f["type"] == "message"] == []
    err = next(f for f in second if f.get("ref") == "b")
    assert (err["type"], err["code"], err["fatal"]) == ("error", "rate_limited", False)
    assert err["retry_after_ms"] > 0
    # A resume in hello pays the same way: refused per conversation, the session goes on.
    ws = await _hello(srv, token, resume={cid: 0})
    frames = await _frames(ws, "c-end")
    await ws.close()
    assert [f for f in frames if f["type"] == "message"] == []
    err = next(f for f in frames if f["type"] == "error")
    assert (err["code"], err["conversation_id"]) == ("rate_limited", cid)


async def test_read_and_typing_frames_are_limited(srv: InProcServer) -> None:
    _tid, admin, _wk = _tenant(srv)
    token = _token(srv, admin, "reader")
    with _client(srv, token) as c:
        cid = c.post("/v1/conversations", json={}).json()["conversation"]["id"]
    ws = await _hello(srv, token)
    for i in range(30):
        await ws.send(json.dumps({"type": "read", "conversation_id": cid, "seq": 0, "ref": f"r{i}"}))
    frames = await _frames(ws, "end")
    await ws.close()
    limited = [f for f in frames if f.get("code") == "rate_limited" and f["ref"].startswith("r")]
    # A read costs half a frame: 10 reads use up the user's 5 frames, then refusals.
    assert len(limited) == 20, frames
    assert all(f["retry_after_ms"] > 0 for f in limited)


async def _db_count_users(srv: InProcServer, tenant_id: str) -> int:
    async with srv.app.state.db.session() as s:
        return int((await s.exec(select(func.count()).select_from(User).where(User.tenant_id == tenant_id))).one())


def test_widget_sessions_are_limited_per_address(srv: InProcServer) -> None:
    tid, _admin, widget_key = _tenant(srv)
    answers = [httpx.post(srv.url + "/v1/widget/session", json={"widget_key": widget_key}, timeout=10)
               for _ in range(5)]
    assert [r.status_code for r in answers] == [201, 201, 201, 429, 429]
    err = answers[-1].json()["error"]
    assert err["code"] == "rate_limited" and err["retry_after_ms"] > 0 and "Retry-After" in answers[-1].headers
    assert srv.call(_db_count_users(srv, tid)) == 3  # no visitor stored for a refused session
    # Guessing keys is paid for too.
    bad = httpx.post(srv.url + "/v1/widget/session", json={"widget_key": "wk_guess"}, timeout=10)
    assert bad.status_code == 429


async def test_sockets_that_never_say_hello_are_limited_per_address(srv: InProcServer) -> None:
    silent = [await websockets.connect(srv.ws_url, open_timeout=10, ping_interval=None) for _ in range(3)]
    extra = await websockets.connect(srv.ws_url, open_timeout=10, ping_interval=None)
    err = json.loads(await asyncio.wait_for(extra.recv(), 10))
    assert (err["type"], err["code"], err["fatal"]) == ("error", "rate_limited", True) and err["retry_after_ms"] > 0
    assert json.loads(await asyncio.wait_for(extra.recv(), 10))["type"] == "bye"
    await extra.close()
    for ws in silent:
        await ws.close()
    await asyncio.sleep(0.3)  # the server sees them go
    _tid, admin, _wk = _tenant(srv)
    ws = await _hello(srv, _token(srv, admin, "after-the-silent-ones"))
    await ws.close()
