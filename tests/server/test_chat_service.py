"""The chat service's write path on SQLite and PostgreSQL, without sockets: durable before
ack, idempotent sends (also when the same key races itself), gap-free seq under concurrent
writers, the fault points of the send path, and texts stored exactly as sent (or refused the
same way) on both databases."""

import asyncio
import random
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from sqlmodel import col, select

from server.accounts.auth import Principal
from server.accounts.tenants import create_tenant
from server.chat.service import ChatService, Sender, iso, validate_text
from server.core.db import Database
from server.core.models import Conversation, Message
from server.errors import BadInput, Conflict, NotFound, ParleyError, TooLong
from server.fanout import MemoryBus, PythonFanout
from tests.support.tenant_db import tenant_database_fixture

# One database per backend for the module (each test works in conversations of its own), so
# the module and its tests share one event loop.
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:server"), pytest.mark.asyncio(loop_scope="module")]


class RecordingBus(MemoryBus):
    def __init__(self, *, fail: bool = False) -> None:
        super().__init__(PythonFanout())
        self.published: list[tuple[str, str]] = []
        self.fail = fail

    async def publish(self, topic: str, data: str) -> None:
        self.published.append((topic, data))
        if self.fail:
            raise ConnectionError("bus down")
        await super().publish(topic, data)


class Boom(Exception):
    """Stands in for os._exit at a fault point: the code after it does not run."""


@dataclass
class World:
    db: Database
    bus: RecordingBus
    chat: ChatService
    tenant_id: str
    user: Principal

    async def conversation(self, user: Principal | None = None) -> str:
        conv = await self.chat.start_conversation(user or self.user)
        return conv.id

    async def rows(self, cid: str) -> list[Message]:
        async with self.db.session() as s:
            return list((await s.exec(select(Message).where(Message.conversation_id == cid)
                                      .order_by(col(Message.seq)))).all())

    async def last_seq(self, cid: str) -> int:
        async with self.db.session() as s:
            conv = await s.get(Conversation, cid)
        assert conv is not None
        return conv.last_seq

    def service(self, **kw: Any) -> ChatService:
        return ChatService(self.db, kw.pop("bus", self.bus), **kw)


backend = tenant_database_fixture("chat", pool_size=20)


@pytest.fixture
def world(backend: tuple[Database, str]) -> World:
    db, tenant_id = backend
    bus = RecordingBus()
    # A user of its own per test, so tests never see each other's conversations.
    user = Principal(tenant_id=tenant_id, role="user", id=f"u-{uuid.uuid4().hex[:8]}", name="Ada")
    return World(db, bus, ChatService(db, bus), tenant_id, user)


def _cmid() -> str:
    return str(uuid.uuid4())


async def test_concurrent_writers_get_gap_free_seq(world: World) -> None:
    cid = await world.conversation()
    senders = [Sender.of(world.user), Sender("agent", "ag-1", "Sam"), Sender("agent", "ag-2", "Kim")]
    posts = [world.chat.post_message(world.tenant_id, cid, senders[i % 3], f"m{i}", client_msg_id=_cmid())
             for i in range(40)]
    results = await asyncio.gather(*posts)
    assert sorted(r.message.seq for r in results) == list(range(1, 41))
    rows = await world.rows(cid)
    assert [m.seq for m in rows] == list(range(1, 41))
    assert await world.last_seq(cid) == 40


async def test_same_key_racing_itself_stores_one_row_and_answers_identically(world: World) -> None:
    cid = await world.conversation()
    sender = Sender.of(world.user)
    for round_ in range(10):
        cmid = _cmid()
        results = await asyncio.gather(*(
            world.chat.post_message(world.tenant_id, cid, sender, f"race {round_}", client_msg_id=cmid)
            for _ in range(6)))
        assert sum(r.created for r in results) == 1
        assert len({(r.message.id, r.message.seq, iso(r.message.created_at)) for r in results}) == 1
    rows = await world.rows(cid)
    assert [m.seq for m in rows] == list(range(1, 11))
    assert len({m.client_msg_id for m in rows}) == 10


async def test_same_key_racing_with_another_text_keeps_the_original(world: World) -> None:
    cid = await world.conversation()
    sender = Sender.of(world.user)
    for _ in range(10):
        cmid = _cmid()
        results = await asyncio.gather(
            *(world.chat.post_message(world.tenant_id, cid, sender, text, client_msg_id=cmid)
              for text in ("first", "second", "first", "second")),
            return_exceptions=True)
        won = [r for r in results if not isinstance(r, BaseException)]
        lost = [r for r in results if isinstance(r, BaseException)]
        assert won and lost
        assert all(isinstance(e, Conflict) and e.code == "idempotency_key_reused" for e in lost), lost
        texts = {r.message.text for r in won}
        assert len(texts) == 1
        assert len(lost) == 2
    rows = await world.rows(cid)
    assert len(rows) == 10
    assert [m.seq for m in rows] == list(range(1, 11))


async def test_uppercase_key_is_the_same_key(world: World) -> None:
    cid = await world.conversation()
    cmid = _cmid()
    sender = Sender.of(world.user)
    a = await world.chat.post_message(world.tenant_id, cid, sender, "hi", client_msg_id=cmid)
    b = await world.chat.post_message(world.tenant_id, cid, sender, "hi", client_msg_id=cmid.upper())
    assert (b.created, b.message.id) == (False, a.message.id)


async def test_keys_are_per_sender_and_per_conversation(world: World) -> None:
    cid, other = await world.conversation(), await world.conversation()
    cmid = _cmid()
    a = await world.chat.post_message(world.tenant_id, cid, Sender.of(world.user), "hi", client_msg_id=cmid)
    b = await world.chat.post_message(world.tenant_id, cid, Sender("agent", "ag-1", "Sam"), "hi",
                                      client_msg_id=cmid)
    c = await world.chat.post_message(world.tenant_id, other, Sender.of(world.user), "hi", client_msg_id=cmid)
    assert a.created and b.created and c.created
    assert (a.message.seq, b.message.seq, c.message.seq) == (1, 2, 1)


async def test_a_racing_duplicate_is_never_mistaken_for_an_outage(world: World) -> None:
    """The database layer maps errors whose text looks like a connectivity problem to
    ``unavailable``; a unique-key conflict must never be one, whatever the ids contain."""
    for sender_id in ("timeout-user", "connection-closed", "refused too many"):
        user = Principal(tenant_id=world.tenant_id, role="user", id=f"{sender_id}-{uuid.uuid4().hex[:6]}")
        cid = await world.conversation(user)
        cmid = _cmid()
        results = await asyncio.gather(*(
            world.chat.post_message(world.tenant_id, cid, Sender.of(user), "same", client_msg_id=cmid,
                                    principal=user)
            for _ in range(6)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, errors
        assert len({r.message.id for r in results}) == 1  # type: ignore[union-attr]


async def test_fault_before_commit_stores_nothing_and_the_retry_stores_once(world: World) -> None:
    cid = await world.conversation()
    sender, cmid = Sender.of(world.user), _cmid()
    await world.chat.post_message(world.tenant_id, cid, sender, "before", client_msg_id=_cmid())
    points: list[str] = []

    def crash_before_commit(point: str) -> None:
        points.append(point)
        if point == "before_commit":
            raise Boom(point)

    crashing = world.service(fault_hook=crash_before_commit)
    with pytest.raises(Boom):
        await crashing.post_message(world.tenant_id, cid, sender, "x", client_msg_id=cmid)
    assert [m.seq for m in await world.rows(cid)] == [1]
    assert await world.last_seq(cid) == 1
    retry = await world.chat.post_message(world.tenant_id, cid, sender, "x", client_msg_id=cmid)
    assert (retry.created, retry.message.seq) == (True, 2)
    assert [m.client_msg_id for m in await world.rows(cid)].count(cmid) == 1


@pytest.mark.parametrize("point", ["after_commit", "before_publish", "during_fanout"])
async def test_fault_after_commit_keeps_the_row_and_the_retry_returns_it(world: World, point: str) -> None:
    cid = await world.conversation()
    sender, cmid = Sender.of(world.user), _cmid()

    def crash(p: str) -> None:
        if p == point:
            raise Boom(p)

    crashing = world.service(fault_hook=crash)
    with pytest.raises(Boom):
        await crashing.send(world.tenant_id, cid, sender, "x", client_msg_id=cmid)
    rows = await world.rows(cid)
    assert [(m.seq, m.client_msg_id) for m in rows] == [(1, cmid)]
    world.bus.published.clear()
    retry = await world.chat.send(world.tenant_id, cid, sender, "x", client_msg_id=cmid)
    assert (retry.created, retry.message.id) == (False, rows[0].id)
    # A duplicate makes no second fan-out (the first one may have been cut short by the crash;
    # subscribers catch up from the database when they resume).
    assert world.bus.published == []


async def test_fault_points_are_reached_in_order_on_the_send_path(world: World) -> None:
    cid = await world.conversation()
    seen: list[str] = []
    chat = world.service(fault_hook=seen.append)
    cmid = _cmid()
    await chat.send(world.tenant_id, cid, Sender.of(world.user), "x", client_msg_id=cmid)
    assert seen == ["before_commit", "after_commit", "before_publish", "during_fanout"]
    seen.clear()
    await chat.send(world.tenant_id, cid, Sender.of(world.user), "x", client_msg_id=cmid)
    assert seen == []  # a duplicate never reaches a write or a publish


async def test_a_failing_bus_never_undoes_a_commit(world: World) -> None:
    cid = await world.conversation()
    bus = RecordingBus(fail=True)
    chat = world.service(bus=bus)
    cmid = _cmid()
    posted = await chat.post_message(world.tenant_id, cid, Sender.of(world.user), "x", client_msg_id=cmid)
    with pytest.raises(ConnectionError):
        await chat.publish(posted)
    rows = await world.rows(cid)
    assert [(m.id, m.seq) for m in rows] == [(posted.message.id, 1)]


async def test_other_tenant_and_other_user_look_like_missing(world: World) -> None:
    cid = await world.conversation()
    other_tenant = (await create_tenant(world.db, "Other")).tenant
    stranger = Principal(tenant_id=other_tenant.id, role="user", id=world.user.id)
    neighbour = Principal(tenant_id=world.tenant_id, role="user", id="u-bob")
    for p in (stranger, neighbour):
        with pytest.raises(NotFound):
            await world.chat.post_message(p.tenant_id, cid, Sender.of(p), "x", client_msg_id=_cmid(), principal=p)
        with pytest.raises(NotFound):
            await world.chat.history(p, cid)
    with pytest.raises(NotFound):
        await world.chat.post_message(world.tenant_id, "no-such-conversation", Sender.of(world.user), "x",
                                      client_msg_id=_cmid())
    assert await world.rows(cid) == []


def _texts() -> list[str]:
    rnd = random.Random(20240601)
    alphabet = ("a", "Z", " ", "\t", "\n", "\r", "é", "ß", "中", "文", "😀", "👩‍👩‍👧", "\u200b", "\u202e",
                "\ufeff", "\u0301", "\x00", "\ud800", "\udfff", "\x7f", "\x1b", "'", '"', "\\", "%", "_",
                "\U0010ffff", "\ufffd")
    out = ["hello", "   ", "", "\n\t ", "a\x00b", "\ud83d", "x" * 4000, "x" * 4001, "é" * 4000, "😀" * 4000,
           "😀" * 4001, "'; DROP TABLE messages; --", "\\u0000", "\u3000", " x "]
    for _ in range(100):
        out.append("".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40))))
    return out


async def test_texts_are_stored_exactly_or_refused_the_same_way_on_both_databases(world: World) -> None:
    """The outcome is a pure function of the text (``validate_text``): the same on SQLite and
    PostgreSQL, and a stored text reads back byte for byte."""
    cid = await world.conversation()
    sender = Sender.of(world.user)
    expected: dict[str, str] = {}
    for text in _texts():
        cmid = _cmid()
        try:
            validate_text(text, 4000)
            want = "ok"
        except ParleyError as exc:
            want = exc.code
        try:
            posted = await world.chat.post_message(world.tenant_id, cid, sender, text, client_msg_id=cmid)
            got = "ok"
            expected[posted.message.id] = text
        except (BadInput, TooLong) as exc:
            got = exc.code
        assert got == want, (text, got, want)
        if want != "ok":
            assert want in ("validation_failed", "empty_message", "too_long")
    stored = {m.id: m.text for m in await world.rows(cid)}
    assert stored == expected
    assert [m.seq for m in await world.rows(cid)] == list(range(1, len(expected) + 1))
