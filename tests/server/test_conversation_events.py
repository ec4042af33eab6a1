"""Applying a transition on SQLite and PostgreSQL: the status, its system message and its push
event commit together (a crash between two commits lost the push event before), the events that
follow the commit, and the defects the single event path fixed (an agent who writes takes the
conversation with the router's side effects; an agent who comes online is offered the queue)."""

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlmodel import col, select

from server.accounts.auth import Principal
from server.chat.events import ConversationEvent
from server.chat.lifecycle import Action, Actor, ActorKind, Follow, Status
from server.chat.service import ChatService, Sender
from server.core.db import Database
from server.core.events import Dispatcher, PresenceChanged
from server.core.models import Agent, Conversation, Message, OutboxRow
from server.fanout import MemoryBus, PythonFanout
from server.handoff.router import Router
from tests.support.tenant_db import tenant_database

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:server"), pytest.mark.asyncio(loop_scope="module")]


class Boom(Exception):
    """Stands in for os._exit at a fault point: the code after it does not run."""


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                  ) -> AsyncIterator[tuple[Database, str]]:
    async with tenant_database(request.param, tmp_path_factory.mktemp("events"), pool_size=10) as backend:
        yield backend


def _user(tenant_id: str) -> Principal:
    return Principal(tenant_id=tenant_id, role="user", id=f"u-{uuid.uuid4().hex[:8]}", name="Ada")


async def _push_events(db: Database, cid: str) -> list[str]:
    async with db.session() as s:
        rows = (await s.exec(select(OutboxRow).where(OutboxRow.topic == "push").order_by(col(OutboxRow.id)))).all()
    return [r.payload["name"] for r in rows
            if r.payload.get("kind") == "chat.event" and r.payload["properties"]["conversation_id"] == cid]


async def _conv(db: Database, cid: str) -> Conversation:
    async with db.session() as s:
        conv = await s.get(Conversation, cid)
    assert conv is not None
    return conv


@pytest.mark.parametrize("point", ["status_before_commit", "status_after_commit"])
async def test_the_push_event_exists_iff_the_status_changed(backend: tuple[Database, str], point: str) -> None:
    db, tenant_id = backend

    def fault(name: str) -> None:
        if name == point:
            raise Boom(name)

    chat = ChatService(db, MemoryBus(PythonFanout()), fault_hook=fault)
    conv = await chat.start_conversation(_user(tenant_id))
    with pytest.raises(Boom):
        await chat.apply(tenant_id, conv.id, Action.HANDOFF, Actor(ActorKind.SYSTEM, "router"),
                         reason="user_request", notice="A person will be with you shortly")
    after = await _conv(db, conv.id)
    events = await _push_events(db, conv.id)
    async with db.session() as s:
        notices = (await s.exec(select(Message).where(Message.conversation_id == conv.id))).all()
    if point == "status_before_commit":
        assert (after.status, events, len(notices), after.last_seq) == (Status.BOT, [], 0, 0)
    else:
        # The process "died" right after the commit: status, notice and push event all landed.
        assert after.status == Status.QUEUED
        assert events == ["conversation.handoff"]
        assert [(m.seq, m.kind, m.text) for m in notices] == [(1, "system", "A person will be with you shortly")]
        assert after.last_seq == 1


async def test_a_status_change_is_announced_after_commit_with_its_side_effects(
        backend: tuple[Database, str]) -> None:
    db, tenant_id = backend
    events = Dispatcher()
    bus = MemoryBus(PythonFanout(), events)
    chat = ChatService(db, bus)
    seen: list[tuple[ConversationEvent, str]] = []

    async def record(event: ConversationEvent) -> None:
        # Handlers run after the commit: the new status is already what a reader sees.
        seen.append((event, (await _conv(db, event.conversation_id)).status))

    events.subscribe(ConversationEvent, record)
    user = _user(tenant_id)
    conv = await chat.start_conversation(user)
    await chat.apply(tenant_id, conv.id, Action.HANDOFF, Actor(ActorKind.SYSTEM, "router"), reason="user_request")
    await chat.apply(tenant_id, conv.id, Action.HANDOFF, Actor(ActorKind.SYSTEM, "router"), reason="again")
    assert [(e.action, e.before, e.status, st) for e, st in seen] == [
        (Action.HANDOFF, Status.BOT, Status.QUEUED, "queued")]  # a repeat changes nothing, announces nothing
    assert seen[0][0].follow == (Follow("user", user.id),)
    assert seen[0][0].summarize and seen[0][0].offer_waiting and seen[0][0].stop_bot


async def test_an_agent_who_writes_takes_the_conversation_with_the_claims_side_effects(
        backend: tuple[Database, str]) -> None:
    db, tenant_id = backend
    events = Dispatcher()
    chat = ChatService(db, MemoryBus(PythonFanout(), events))
    seen: list[ConversationEvent] = []

    async def record(event: ConversationEvent) -> None:
        seen.append(event)

    events.subscribe(ConversationEvent, record)
    user = _user(tenant_id)
    conv = await chat.start_conversation(user)
    await chat.apply(tenant_id, conv.id, Action.HANDOFF, Actor(ActorKind.SYSTEM, "router"), reason="user_request")
    agent = Principal(tenant_id=tenant_id, role="agent", id=f"ag-{uuid.uuid4().hex[:8]}", name="Sam")
    posted = await chat.post_message(tenant_id, conv.id, Sender.of(agent), "Hi, I'm Sam",
                                     client_msg_id=str(uuid.uuid4()), principal=agent)
    # The push event rode the message's own transaction, before anything was published.
    assert await _push_events(db, conv.id) == ["conversation.handoff", "conversation.assigned"]
    assert len(seen) == 1
    await chat.publish(posted)
    taken = seen[-1]
    assert (taken.action, taken.before, taken.status, taken.assignee_id) == (
        Action.WRITE, Status.QUEUED, Status.ASSIGNED, agent.id)
    assert taken.follow == (Follow("user", user.id), Follow("agent", agent.id))
    assert taken.republish_queue and taken.stop_bot
    after = await _conv(db, conv.id)
    assert (after.status, after.assignee_id, after.last_agent_id) == (Status.ASSIGNED, agent.id, agent.id)


async def test_a_conversation_event_survives_the_bus_between_nodes() -> None:
    from server.chat.events import EventBridge

    event = ConversationEvent("t1", "c1", "u1", Action.CLAIM, "a1", Status.QUEUED, Status.ASSIGNED, "a1",
                              reason="user_request", follow=(Follow("user", "u1"), Follow("agent", "a1")),
                              republish_queue=True, stop_bot=True)
    node, back = ConversationEvent.from_json(event.to_json("node-a"))
    assert (node, back) == ("node-a", event)
    # Node B hears node A's event and runs only the handlers subscribed everywhere.
    bus = MemoryBus(PythonFanout())
    a, b = Dispatcher(), Dispatcher()
    heard: list[tuple[str, Any]] = []

    async def on(name: str, e: ConversationEvent) -> None:
        heard.append((name, e.conversation_id))

    a.subscribe(ConversationEvent, lambda e: on("a-local", e))
    b.subscribe(ConversationEvent, lambda e: on("b-everywhere", e), everywhere=True)
    b.subscribe(ConversationEvent, lambda e: on("b-local", e))
    bridge_a, bridge_b = EventBridge(bus, a, "node-a"), EventBridge(bus, b, "node-b")
    await bridge_a.start()
    await bridge_b.start()
    await bridge_a.announce(event)
    assert heard == [("a-local", "c1"), ("b-everywhere", "c1")]


async def test_an_agent_who_comes_online_is_offered_the_queue(backend: tuple[Database, str]) -> None:
    db, tenant_id = backend
    events = Dispatcher()
    chat = ChatService(db, MemoryBus(PythonFanout(), events))
    online: set[str] = set()
    router = Router(chat, lambda _t: set(online))
    events.subscribe(ConversationEvent, router.on_conversation_event)
    events.subscribe(PresenceChanged, router.on_presence)
    async with db.write() as s:
        agent = Agent(tenant_id=tenant_id, email=f"{uuid.uuid4().hex[:8]}@example.com", name="Sam",
                      password_hash="x", max_concurrent=50)
        s.add(agent)
    conv = await chat.start_conversation(_user(tenant_id))
    queued = await router.handoff(tenant_id, conv.id, reason="user_request")
    assert queued.status == Status.QUEUED  # nobody online to take it
    online.add(agent.id)
    await events.publish(PresenceChanged(tenant_id, "agent", agent.id, online=True))
    after = await _conv(db, conv.id)
    assert (after.status, after.assignee_id) == (Status.ASSIGNED, agent.id)
    async with db.session() as s:
        texts = (await s.exec(select(Message.text).where(Message.conversation_id == conv.id))).all()
    assert texts == ["Sam joined the conversation"]
