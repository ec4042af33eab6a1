"""Group commit (server.chat.writer) on SQLite and PostgreSQL: many concurrent sends share a
transaction, and each keeps the one-message promises. 1,000 concurrent sends across 100
conversations give exactly 1,000 rows and gap-free seqs; duplicate keys inside one batch make one
row and the same ack; a bad message fails alone with its own error code while the rest of its
batch commits; a crash inside a batch (before or after its commit) loses no acked message and acks
nothing that did not commit; two writers (two nodes) on the same conversations stay gap-free."""

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from server.accounts.auth import Principal
from server.chat.service import ChatService, Posted, Sender
from server.core.db import Database
from server.core.models import Conversation, Message, OutboxRow, Participant
from server.errors import Conflict, NotFound, ParleyError
from server.fanout import MemoryBus, PythonFanout
from tests.support.tenant_db import tenant_database_fixture

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:server"), pytest.mark.asyncio(loop_scope="module")]


class Boom(Exception):
    """Stands in for os._exit at a fault point: the code after it does not run."""


@dataclass
class World:
    db: Database
    tenant_id: str
    user: Principal

    def service(self, **kw: Any) -> ChatService:
        return ChatService(self.db, MemoryBus(PythonFanout()), **kw)

    async def conversations(self, chat: ChatService, n: int) -> list[str]:
        return [(await chat.start_conversation(self.user)).id for _ in range(n)]

    async def rows(self, cids: list[str]) -> list[Message]:
        async with self.db.session() as s:
            return list((await s.exec(select(Message).where(col(Message.conversation_id).in_(cids))
                                      .order_by(col(Message.conversation_id), col(Message.seq)))).all())

    async def last_seqs(self, cids: list[str]) -> dict[str, int]:
        async with self.db.session() as s:
            return {c.id: c.last_seq for c in
                    (await s.exec(select(Conversation).where(col(Conversation.id).in_(cids)))).all()}


backend = tenant_database_fixture("gc", pool_size=20)


@pytest.fixture
def world(backend: tuple[Database, str]) -> World:
    db, tenant_id = backend
    return World(db, tenant_id, Principal(tenant_id=tenant_id, role="user", id=f"u-{uuid.uuid4().hex[:8]}",
                                          name="Ada"))


def _cmid() -> str:
    return str(uuid.uuid4())


def _gap_free(rows: list[Message], cids: list[str]) -> dict[str, list[int]]:
    by: dict[str, list[int]] = {cid: [] for cid in cids}
    for m in rows:
        by[m.conversation_id].append(m.seq)
    return by


async def test_a_thousand_concurrent_sends_across_a_hundred_conversations(world: World) -> None:
    chat = world.service()
    cids = await world.conversations(chat, 100)
    sender = Sender.of(world.user)
    results = await asyncio.gather(*(
        chat.post_message(world.tenant_id, cids[i % 100], sender, f"m{i}", client_msg_id=_cmid(), principal=world.user)
        for i in range(1000)))
    assert all(r.created for r in results)
    rows = await world.rows(cids)
    assert len(rows) == 1000
    assert _gap_free(rows, cids) == {cid: list(range(1, 11)) for cid in cids}
    assert await world.last_seqs(cids) == dict.fromkeys(cids, 10)
    # Each ack is its row: the same id and seq as stored.
    assert {(r.message.id, r.message.seq) for r in results} == {(m.id, m.seq) for m in rows}
    # They were written together (a transaction holds many), with every side row of each message:
    assert chat.writer.batches < 1000
    async with world.db.session() as s:
        bot_rows = (await s.exec(select(func.count()).select_from(OutboxRow).where(OutboxRow.topic == "bot"))).one()
        reads = (await s.exec(select(Participant).where(col(Participant.conversation_id).in_(cids),
                                                        Participant.kind == "user"))).all()
    assert bot_rows >= 1000  # the AI agent's work for each user message (other tests add their own)
    assert {(p.conversation_id, p.read_seq) for p in reads} == {(cid, 10) for cid in cids}


async def test_duplicate_keys_inside_one_batch_make_one_row_and_the_same_ack(world: World) -> None:
    chat = world.service()
    cids = await world.conversations(chat, 3)
    sender = Sender.of(world.user)
    keys = [_cmid() for _ in range(3)]
    sends = [chat.post_message(world.tenant_id, cids[i % 3], sender, f"t{i % 3}", client_msg_id=keys[i % 3])
             for i in range(12)]
    # The same key with another text in the same batch: refused, the first one stands.
    sends.append(chat.post_message(world.tenant_id, cids[0], sender, "other", client_msg_id=keys[0]))
    *results, clash = await asyncio.gather(*sends, return_exceptions=True)
    assert isinstance(clash, Conflict) and clash.code == "idempotency_key_reused"
    posted = [r for r in results if isinstance(r, Posted)]
    assert len(posted) == 12
    assert chat.writer.batches == 1  # they really shared a transaction
    for i, cid in enumerate(cids):
        mine = [r for r in posted if r.message.conversation_id == cid]
        assert sum(r.created for r in mine) == 1
        assert {(r.message.id, r.message.seq, r.message.client_msg_id) for r in mine} == {
            (mine[0].message.id, 1, keys[i])}
    rows = {m.conversation_id: m for m in await world.rows(cids)}
    assert len(rows) == 3
    assert {(m.conversation_id, m.seq, m.text) for m in rows.values()} == {
        (cid, 1, f"t{i}") for i, cid in enumerate(cids)}
    # A later batch answers the same keys with the same messages.
    again = await chat.post_message(world.tenant_id, cids[1], sender, "t1", client_msg_id=keys[1].upper())
    assert (again.created, again.message.id) == (False, rows[cids[1]].id)


async def test_a_bad_message_fails_alone_and_the_rest_of_its_batch_commits(world: World) -> None:
    chat = world.service()
    cids = await world.conversations(chat, 2)
    sender = Sender.of(world.user)
    stranger = Principal(tenant_id=world.tenant_id, role="user", id="u-stranger")
    good = [chat.post_message(world.tenant_id, cids[i % 2], sender, f"ok{i}", client_msg_id=_cmid(),
                              principal=world.user) for i in range(8)]
    bad = [
        chat.post_message(world.tenant_id, "no-such-conversation", sender, "x", client_msg_id=_cmid()),
        chat.post_message(world.tenant_id, cids[0], Sender.of(stranger), "x", client_msg_id=_cmid(),
                          principal=stranger),
        chat.post_message(world.tenant_id, cids[0], sender, "x", client_msg_id=_cmid(),
                          attachments=["att-not-there"], principal=world.user),
        # A row the database refuses (its citations cannot be stored): found by writing each alone.
        chat.post_message(world.tenant_id, cids[1], Sender("bot", "b-1", "Bot"), "x",
                          citations=[{"title": object()}]),
    ]
    out = await asyncio.gather(*good[:4], *bad, *good[4:], return_exceptions=True)
    errors = out[4:4 + len(bad)]
    acked = list(out[:4] + out[4 + len(bad):])
    assert all(isinstance(r, Posted) and r.created for r in acked), acked
    assert [type(e) for e in errors[:3]] == [NotFound, NotFound, NotFound]
    assert isinstance(errors[3], ParleyError) and errors[3].code == "internal"
    rows = await world.rows(cids)
    assert sorted(m.text for m in rows) == sorted(f"ok{i}" for i in range(8))
    assert _gap_free(rows, cids) == {cid: [1, 2, 3, 4] for cid in cids}
    assert {(r.message.id, r.message.seq) for r in acked if isinstance(r, Posted)} == {(m.id, m.seq) for m in rows}
    assert await world.last_seqs(cids) == dict.fromkeys(cids, 4)


@pytest.mark.parametrize("point", ["before_commit", "after_commit"])
async def test_a_crash_inside_a_batch_loses_no_ack_and_acks_nothing_uncommitted(world: World, point: str) -> None:
    calls = {"n": 0}

    def crash_on_third(p: str) -> None:
        if p == point:
            calls["n"] += 1
            if calls["n"] == 3:
                raise Boom(p)

    chat = world.service(fault_hook=crash_on_third, write_batch_max=7)
    cids = await world.conversations(chat, 5)
    sender = Sender.of(world.user)
    keys = [_cmid() for _ in range(60)]
    out = await asyncio.gather(*(
        chat.post_message(world.tenant_id, cids[i % 5], sender, f"m{i}", client_msg_id=keys[i])
        for i in range(60)), return_exceptions=True)
    acked = {keys[i]: r.message for i, r in enumerate(out) if isinstance(r, Posted)}
    crashed = [keys[i] for i, r in enumerate(out) if isinstance(r, Boom)]
    assert len(acked) + len(crashed) == 60 and crashed
    stored = {m.client_msg_id: m for m in await world.rows(cids)}
    # Nothing acknowledged is missing, and each ack is the stored row.
    assert all(stored[k].id == m.id and stored[k].seq == m.seq for k, m in acked.items())
    if point == "before_commit":
        assert len(crashed) == 7  # the third batch, all of it: never committed, never acked
        assert not set(crashed) & set(stored)
    else:
        assert len(crashed) == 1  # one sender crashed after the commit: its row is there
        assert set(crashed) <= set(stored)
    # The clients retry what was not acknowledged: one row each, and no gap anywhere.
    retry = world.service()
    for k in crashed:
        i = keys.index(k)
        r = await retry.post_message(world.tenant_id, cids[i % 5], sender, f"m{i}", client_msg_id=k)
        assert r.created == (point == "before_commit")
        if k in stored:
            assert r.message.id == stored[k].id
    rows = await world.rows(cids)
    assert len(rows) == 60 and {m.client_msg_id for m in rows} == set(keys)
    assert _gap_free(rows, cids) == {cid: list(range(1, 13)) for cid in cids}


async def test_two_writers_on_the_same_conversations_stay_gap_free(world: World) -> None:
    """Two nodes, each with its own writer and batches in flight, sending into the same
    conversations: the counter row's lock orders them."""
    a, b = world.service(write_batch_max=16), world.service(write_batch_max=16)
    cids = await world.conversations(a, 10)
    agent = Sender("agent", "ag-1", "Sam")
    sends = [(a if i % 2 else b).post_message(world.tenant_id, cids[i % 10], agent, f"m{i}", client_msg_id=_cmid())
             for i in range(400)]
    results = await asyncio.gather(*sends)
    assert len({r.message.id for r in results}) == 400
    rows = await world.rows(cids)
    assert _gap_free(rows, cids) == {cid: list(range(1, 41)) for cid in cids}


async def test_the_same_key_through_two_writers_at_once_makes_one_row(world: World) -> None:
    """A retry that reaches another node while the first send is still in flight: the unique key
    refuses the second row inside its batch, and that message alone answers with the first."""
    a, b = world.service(), world.service()
    cids = await world.conversations(a, 2)
    sender = Sender.of(world.user)
    for round_ in range(5):
        key = _cmid()
        others = [_cmid() for _ in range(6)]
        sends = [w.post_message(world.tenant_id, cids[0], sender, f"same {round_}", client_msg_id=key)
                 for w in (a, b, a, b)]
        sends += [(a, b)[i % 2].post_message(world.tenant_id, cids[1], sender, f"other {i}", client_msg_id=k)
                  for i, k in enumerate(others)]
        out = await asyncio.gather(*sends)
        assert len({r.message.id for r in out[:4]}) == 1 and sum(r.created for r in out[:4]) == 1
        assert all(r.created for r in out[4:])
    rows = await world.rows(cids)
    assert _gap_free(rows, cids) == {cids[0]: list(range(1, 6)), cids[1]: list(range(1, 31))}
