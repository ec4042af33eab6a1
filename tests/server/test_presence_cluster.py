"""Presence is cluster-wide: two app instances on one PostgreSQL and one Redis. An agent
connected to node B is auto-assigned by node A (and then follows the conversation on B), push
on node A sees a user connected to B as online, and the users of a node that dies go offline
once its presence expires."""

import asyncio
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import pytest

from server.fanout import PythonFanout, RedisBus
from server.realtime.presence import ClusterPresence
from tests.conftest import REDIS_URL, create_pg_database, drop_pg_database, need
from tests.support.inproc import FAST, InProcServer, make_settings
from tests.support.ws import WsClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:server")

PRESENCE = {"presence_heartbeat_s": 0.2, "presence_ttl_s": 1.0}


class Pair:
    def __init__(self, a: InProcServer, b: InProcServer) -> None:
        self.a, self.b = a, b


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    import redis

    try:
        ok = bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        ok = False
    need("Redis", ok)
    url = asyncio.run(create_pg_database())
    dir_a: Path = tmp_path_factory.mktemp("presence-a")
    dir_b: Path = tmp_path_factory.mktemp("presence-b")
    a = InProcServer(make_settings(dir_a, url, redis_url=REDIS_URL, **FAST, **PRESENCE))
    b = InProcServer(make_settings(dir_b, url, redis_url=REDIS_URL, **FAST, **PRESENCE))
    try:
        a.start()
        shutil.copy(dir_a / "demo-admin-key.txt", dir_b / "demo-admin-key.txt")
        shutil.copy(dir_a / "secret.key", dir_b / "secret.key")
        b.start()
        yield Pair(a, b)
    finally:
        b.stop()
        a.stop()
        asyncio.run(drop_pg_database(url))


def _tenant(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["tid"])


async def _until(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        await asyncio.sleep(0.05)


async def test_an_agent_on_node_b_is_auto_assigned_by_node_a_and_follows_there(pair: Pair) -> None:
    tag = uuid.uuid4().hex[:8]
    agent_id, agent_token = pair.a.agent(f"Sam {tag}", f"sam-{tag}@example.com")
    tenant = _tenant(agent_token)
    gw_a = pair.a.app.state.gateway
    agent = await WsClient.connect(pair.b.ws_url, agent_token)
    user = await WsClient.connect(pair.a.ws_url, pair.a.token(f"user-{tag}"))
    try:
        await _until("node A sees the agent of node B", lambda: agent_id in gw_a.online_agents(tenant))
        cid = await user.start()
        await user.send({"type": "handoff.request", "conversation_id": cid, "ref": "h"})
        reply = await user.expect("conversation", ref="h")
        # Node A assigned it, to the only agent online: the one on node B.
        assert reply["conversation"]["status"] == "assigned"
        assert reply["conversation"]["assignee"] == agent_id
        await agent.expect("conversation.updated", timeout=10)
        # The event crossed to node B, whose socket of the agent now follows the conversation.
        await _until("node B's agent socket follows the conversation", lambda: any(
            f"a:{cid}" in s.conn.topics for s in pair.b.app.state.gateway.sessions.values()
            if s.conn is not None and s.conn.key[2] == agent_id))
        ack = await user.say(cid, "are you there?")
        got = await agent.expect("message", timeout=10, conversation_id=cid, seq=ack["seq"])
        assert got["message"]["text"] == "are you there?"
    finally:
        await agent.close()
        await user.close()
    await _until("node A sees the agent go offline", lambda: agent_id not in gw_a.online_agents(tenant))


async def test_a_queued_conversation_is_offered_to_an_agent_who_comes_online_on_another_node(
        pair: Pair) -> None:
    tag = uuid.uuid4().hex[:8]
    user = await WsClient.connect(pair.a.ws_url, pair.a.token(f"waiting-{tag}"))
    try:
        cid = await user.start()
        await user.send({"type": "handoff.request", "conversation_id": cid, "ref": "h"})
        reply = await user.expect("conversation", ref="h")
        assert reply["conversation"]["status"] == "queued"  # no agent online: it waits
        agent_id, agent_token = pair.a.agent(f"Kim {tag}", f"kim-{tag}@example.com")
        agent = await WsClient.connect(pair.b.ws_url, agent_token)
        try:
            deadline = time.monotonic() + 10
            while True:  # the queue topic tells every agent; this one is the new owner
                frame = await agent.recv(max(0.01, deadline - time.monotonic()))
                conv = frame.get("conversation") or {}
                if frame["type"] == "conversation.updated" and conv.get("id") == cid and \
                        conv.get("status") == "assigned":
                    break
            assert conv["assignee"] == agent_id
        finally:
            await agent.close()
    finally:
        await user.close()


async def test_push_on_node_a_sees_a_user_connected_to_node_b(pair: Pair) -> None:
    sub = f"pushed-{uuid.uuid4().hex[:8]}"
    token = pair.a.token(sub)
    tenant = _tenant(token)
    push_presence = pair.a.app.state.push.engine.presence
    assert not push_presence.is_online(tenant, sub)
    user = await WsClient.connect(pair.b.ws_url, token)
    try:
        await _until("push on A sees the user on B", lambda: push_presence.is_online(tenant, sub))
    finally:
        await user.close()
    await _until("push on A sees the user leave B", lambda: not push_presence.is_online(tenant, sub))


async def test_the_users_of_a_killed_node_go_offline() -> None:
    # A third node, here in the test's loop: it says a user is connected, then dies without a word.
    gone = RedisBus(PythonFanout(), REDIS_URL)
    await gone.start()
    watcher_bus = RedisBus(PythonFanout(), REDIS_URL)
    await watcher_bus.start()
    dead = ClusterPresence(gone, heartbeat_s=0.2, ttl_s=1.0)
    watcher = ClusterPresence(watcher_bus, heartbeat_s=0.2, ttl_s=1.0)
    key = ("t-killed", "user", uuid.uuid4().hex[:8])
    try:
        await watcher.start()
        await dead.start()
        assert await dead.connected(key)
        await _until("the other node sees the user", lambda: watcher.is_online(*key))
        assert dead._task is not None
        dead._task.cancel()  # killed: no heartbeat, no goodbye
        await gone.stop()
        await _until("the user of the dead node goes offline", lambda: not watcher.is_online(*key), timeout=5)
    finally:
        await watcher.stop()
        await watcher_bus.stop()
