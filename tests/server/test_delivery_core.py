"""Delivery promises over real sockets, on SQLite and on PostgreSQL: idempotent sends under
concurrent retries, unusable resume cursors, random disconnects and resumes while a writer
keeps sending, and a hypothesis state machine of send / reconnect / kill. Every test is judged
by the history checker (``tests/support/history.py``) against the database rows.

One ``parley serve`` (uvicorn) per backend serves the whole module (tests work in
conversations of their own; a subprocess, so server and clients each get a core); the rate
limits are lifted because these tests are about delivery, not about the limits the e2e suite
checks."""

import asyncio
import json
import random
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import delete
from websockets.sync.client import connect

from server.accounts.auth import issue_token
from server.accounts.tenants import create_tenant
from server.core.db import Database
from server.core.models import Conversation, Message, Participant
from tests.conftest import create_pg_database, drop_pg_database
from tests.support.history import History, Member, Pipe, db_messages
from tests.support.inproc import FAST_ENV
from tests.support.live import LiveServer, free_port

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:server")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def node(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    url = asyncio.run(create_pg_database()) if request.param == "postgres" else None
    data = tmp_path_factory.mktemp(f"core-{request.param}")
    srv = LiveServer("uvicorn", free_port(), data, {**FAST_ENV, **({"PARLEY_DATABASE_URL": url} if url else {})})
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        if url is not None:
            asyncio.run(drop_pg_database(url))


def _db_url(srv: LiveServer) -> str:
    return srv.env.get("PARLEY_DATABASE_URL") or f"sqlite+aiosqlite:///{srv.data_dir / 'parley.db'}"


def _user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------------------------
# Idempotent send: 1,000 keys x 3, one of the retries concurrent with the first send
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_thousand_keys_sent_three_times_make_one_row_and_identical_acks(node: LiveServer) -> None:
    h = History()
    user = _user("idem")
    token = node.token(user)
    # The sending sockets connect before the conversations exist, so they are not subscribed to
    # them (a socket follows its user's open conversations as of its hello): the only fan-out
    # is to the observer, which counts it.
    groups = [[await Pipe.open(node.ws_url, token, h, f"{name}{g}") for name in "ABC"] for g in range(4)]
    creator = await Pipe.open(node.ws_url, token)
    convs = [await creator.quiet_conversation() for _ in range(5)]
    await creator.close()
    observer = Member(h, "observer", node.ws_url, token, dict(convs))
    await observer.connect()
    for cid, base in convs:
        h.expect_complete("observer", cid, base)
    keys = [(convs[i % 5][0], str(uuid.uuid4()), f"message {i} ✓") for i in range(1000)]
    sem = asyncio.Semaphore(64)
    http = httpx.AsyncClient(base_url=node.url, headers={"Authorization": f"Bearer {token}"}, timeout=30,
                             limits=httpx.Limits(max_connections=16))

    async def rest(cid: str, cmid: str, text: str) -> dict[str, Any]:
        r = await http.post(f"/v1/conversations/{cid}/messages", json={"client_msg_id": cmid, "text": text})
        assert r.status_code in (200, 201), r.text
        body = r.json()
        return {"type": "ack", **body}

    async def one(i: int, cid: str, cmid: str, text: str) -> list[dict[str, Any]]:
        a, b, c = groups[i % len(groups)]
        async with sem:
            # The first send and a retry race each other (socket vs socket, or socket vs REST);
            # the third comes after both answered.
            racer = b.send(cid, cmid, text) if i % 2 else rest(cid, cmid, text)
            first, second = await asyncio.gather(a.send(cid, cmid, text), racer)
            third = await c.send(cid, cmid, text)
            return [first, second, third]

    t0 = time.monotonic()
    answers = await asyncio.gather(*(one(i, *k) for i, k in enumerate(keys)))
    elapsed = time.monotonic() - t0
    mismatched = []
    for (_cid, cmid, _text), trio in zip(keys, answers, strict=True):
        assert all(x["type"] == "ack" for x in trio), trio
        shapes = {(x["conversation_id"], x["client_msg_id"], x["message_id"], x["seq"], x["created_at"]) for x in trio}
        if len(shapes) != 1:
            mismatched.append((cmid, shapes))
    assert mismatched == [], mismatched[:5]

    # A different text under a used key is refused, on the socket and over REST; the original stays.
    for cid, cmid, _text in keys[:50]:
        err = await groups[0][2].send(cid, cmid, "another text", log=False)
        assert (err["type"], err["code"]) == ("error", "idempotency_key_reused"), err
    for cid, cmid, _text in keys[50:100]:
        r = await http.post(f"/v1/conversations/{cid}/messages", json={"client_msg_id": cmid, "text": "other"})
        assert (r.status_code, r.json()["error"]["code"]) == (409, "idempotency_key_reused")
    await http.aclose()

    last = {cid: base + 200 for cid, base in convs}
    await observer.catch_up(last)
    await asyncio.sleep(0.3)  # a second fan-out of a duplicate would arrive now
    for p in (p for g in groups for p in g):
        await p.close()
    await observer.disconnect()
    rows = await db_messages(_db_url(node), [cid for cid, _ in convs])
    assert sum(1 for ms in rows.values() for m in ms if m.client_msg_id) == 1000
    result = h.check(rows, require_all_acked=True)
    result.assert_ok()
    assert result.acked == 1000
    # The observer got every message once: no second row and no second fan-out.
    assert result.received == 1000, result.summary()
    print(f"1000 keys x 3 in {elapsed:.1f}s")


# ---------------------------------------------------------------------------------------------
# Unusable cursors
# ---------------------------------------------------------------------------------------------


async def _frames_until_pong(ws: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
    await ws.send(json.dumps({"type": "ping", "ref": "sync"}))
    out: list[dict[str, Any]] = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame.get("type") == "pong" and frame.get("ref") == "sync":
            return out
        out.append(frame)


async def _hello(node: LiveServer, token: str, resume: dict[str, int]) -> tuple[Any, list[dict[str, Any]]]:
    ws = await websockets.connect(node.ws_url, ping_interval=None, open_timeout=10, close_timeout=2)
    await ws.send(json.dumps({"type": "hello", "token": token, "resume": resume}))
    return ws, await _frames_until_pong(ws)


class Cursors:
    """A tenant-A user with a live conversation (5 messages) and a deleted one, a tenant-B
    user, and the unusable cursors between them."""

    def __init__(self, node: LiveServer) -> None:
        self.node = node

    async def setup(self) -> "Cursors":
        node = self.node
        self.user_a = _user("cur-a")
        self.token_a = node.token(self.user_a)
        pipe = await Pipe.open(node.ws_url, self.token_a)
        self.good, base = await pipe.quiet_conversation()
        for i in range(5):
            assert (await pipe.send(self.good, str(uuid.uuid4()), f"kept {i}"))["type"] == "ack"
        self.good_last = base + 5
        self.deleted, _ = await pipe.quiet_conversation()
        for i in range(3):
            assert (await pipe.send(self.deleted, str(uuid.uuid4()), f"gone {i}"))["type"] == "ack"
        await pipe.close()
        db = Database(_db_url(node), pool_size=2)
        try:
            # No API deletes a conversation: remove its rows directly, as an operator's purge would.
            async with db.write() as s:
                await s.exec(delete(Message).where(Message.conversation_id == self.deleted))  # type: ignore[call-overload]
                await s.exec(delete(Participant).where(Participant.conversation_id == self.deleted))  # type: ignore[call-overload]
                await s.exec(delete(Conversation).where(Conversation.id == self.deleted))  # type: ignore[call-overload]
            other = await create_tenant(db, "Other tenant")
        finally:
            await db.dispose()
        self.token_b = issue_token(other.tenant, sub=self.user_a, role="user", ttl_s=600)  # same sub, other tenant
        return self

    def cases(self) -> list[tuple[str, str, str, int, set[str]]]:
        """(kind, token, conversation, cursor, acceptable codes)."""
        future = [1, 2, 1000, 2**53 - self.good_last]
        return (
            [("future", self.token_a, self.good, self.good_last + d, {"invalid_cursor"}) for d in future]
            + [("other tenant", self.token_b, self.good, s, {"resync_required", "invalid_cursor"})
               for s in (0, 1, self.good_last, self.good_last + 1)]
            + [("deleted", self.token_a, self.deleted, s, {"resync_required", "invalid_cursor"}) for s in (0, 1, 3, 9)]
            + [("never existed", self.token_a, uuid.uuid4().hex, s, {"resync_required", "invalid_cursor"})
               for s in (0, 5)]
        )


async def test_unusable_resume_cursors_are_always_refused_never_a_silent_gap(node: LiveServer) -> None:
    cur = await Cursors(node).setup()
    answered = 0
    cases = cur.cases()
    for kind, token, cid, seq, codes in cases:
        ws, frames = await _hello(node, token, {cid: seq})
        assert frames[0]["type"] == "welcome", frames
        errors = [f for f in frames if f["type"] == "error"]
        leaked = [f for f in frames if f.get("conversation_id") == cid and f["type"] in ("message", "subscribed")]
        assert leaked == [], (kind, leaked)
        assert len(errors) == 1 and errors[0]["code"] in codes and errors[0]["fatal"] is False, (kind, seq, errors)
        answered += 1
        await ws.close()
    assert answered == len(cases)

    # All at once next to a usable cursor: every bad one refused, the good one replays exactly.
    bad_a = {c[2]: c[3] for c in cases if c[1] == cur.token_a and c[0] != "future"}
    ws, frames = await _hello(node, cur.token_a, {cur.good: cur.good_last - 2, **bad_a})
    replay = [f["message"]["seq"] for f in frames if f["type"] == "message"]
    assert replay == [cur.good_last - 1, cur.good_last]
    assert [f["last_seq"] for f in frames if f["type"] == "subscribed"] == [cur.good_last]
    assert sorted(f["code"] for f in frames if f["type"] == "error") == ["resync_required"] * len(bad_a)
    await ws.close()


async def test_unusable_subscribe_cursors_are_refused_never_a_silent_gap(node: LiveServer) -> None:
    """``subscribe`` with ``after_seq``: a future seq is ``invalid_cursor``; another tenant's or
    a deleted conversation answers like a missing one (``not_found``, PROTOCOL.md "Identities"),
    which a client handles like ``resync_required``. Never a replay with a gap."""
    cur = await Cursors(node).setup()
    cases = cur.cases()
    by_token: dict[str, list[tuple[int, tuple[str, str, str, int, set[str]]]]] = {}
    for i, case in enumerate(cases):
        by_token.setdefault(case[1], []).append((i, case))
    answered = 0
    for token, items in by_token.items():
        ws, _ = await _hello(node, token, {})
        for i, (_kind, _tok, cid, seq, _codes) in items:
            await ws.send(json.dumps({"type": "subscribe", "conversation_id": cid, "after_seq": seq, "ref": f"s{i}"}))
        frames = await _frames_until_pong(ws)
        for i, (kind, _tok, _cid, seq, codes) in items:
            replies = [f for f in frames if f.get("ref") == f"s{i}"]
            assert len(replies) == 1 and replies[0]["type"] == "error", (kind, seq, replies)
            assert replies[0]["code"] in codes | {"not_found"}, (kind, seq, replies)
            if kind == "future":
                assert replies[0]["code"] == "invalid_cursor"
            answered += 1
        assert not [f for f in frames if f["type"] in ("message", "subscribed")], frames
        await ws.close()
    assert answered == len(cases)
    # Over REST the same cursors are refused too.
    with httpx.Client(base_url=node.url, headers={"Authorization": f"Bearer {cur.token_a}"}) as http:
        r = http.get(f"/v1/conversations/{cur.good}/messages", params={"after_seq": cur.good_last + 1})
        assert (r.status_code, r.json()["error"]["code"]) == (409, "invalid_cursor")
        r = http.get(f"/v1/conversations/{cur.deleted}/messages", params={"after_seq": 1})
        assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")


async def test_each_refused_resume_cursor_names_its_conversation(node: LiveServer) -> None:
    """With several cursors in one hello, a client must know which conversation to resync.
    Regression (fixed in ad8ac59): the error frames carried no conversation id."""
    cur = await Cursors(node).setup()
    bad = {cur.good: cur.good_last + 3, cur.deleted: 1}
    ws, frames = await _hello(node, cur.token_a, bad)
    errors = [f for f in frames if f["type"] == "error"]
    await ws.close()
    assert len(errors) == 2
    named = {f.get("conversation_id") for f in errors}
    assert named == set(bad), errors


# ---------------------------------------------------------------------------------------------
# 500 random disconnects and resumes while a writer keeps sending
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_500_random_disconnects_and_resumes_lose_duplicate_and_reorder_nothing(node: LiveServer) -> None:
    rnd = random.Random(500)
    h = History()
    user = _user("churn")
    token = node.token(user)
    writer = await Pipe.open(node.ws_url, token, h, "writer")
    cid, base = await writer.quiet_conversation()
    tag = uuid.uuid4().hex[:6]
    agents = [node.agent(f"Agent {i}", f"churn-{tag}-{i}@example.com") for i in range(2)]
    members = [Member(h, f"device-{i}", node.ws_url, token, {cid: base}) for i in range(3)]
    members += [Member(h, f"agent-{i}", node.ws_url, tok, {cid: base}) for i, (_id, tok) in enumerate(agents)]
    for m in members:
        h.expect_complete(m.name, cid, base, role="agent" if m.name.startswith("agent") else "user")

    stop = asyncio.Event()
    sent = 0

    async def write() -> None:
        nonlocal sent
        while not stop.is_set():
            reply = await writer.send(cid, str(uuid.uuid4()), f"churn {sent}")
            assert reply["type"] == "ack", reply
            sent += 1
            await asyncio.sleep(rnd.uniform(0, 0.004))

    disconnects = 0

    async def churn(m: Member) -> None:
        nonlocal disconnects
        while disconnects < 500:
            await m.connect()
            await asyncio.sleep(rnd.uniform(0, 0.03))
            disconnects += 1
            await m.disconnect(abrupt=rnd.random() < 0.5)

    writing = asyncio.create_task(write())
    await asyncio.wait_for(asyncio.gather(*(churn(m) for m in members)), 120)
    stop.set()
    await writing
    last = base + sent
    for m in members:
        await m.catch_up({cid: last})
    await asyncio.sleep(0.2)
    for m in members:
        await m.disconnect()
    await writer.close()
    # The agents, coming online, are also given what earlier tests left in the queue: the frames
    # of those conversations are checked against their own rows.
    result = h.check(await db_messages(_db_url(node), h.conversations() | {cid}), require_all_acked=True)
    # (Before ad8ac59 this found duplicates: a resume racing a publish; see the deterministic
    # test_resume_racing_a_publish_delivers_nothing_twice in test_delivery_fanout.py.)
    result.assert_ok()
    assert disconnects >= 500
    assert sent > 50, "the writer should have kept sending through the churn"
    assert sum(m.connects for m in members) >= 500 + len(members)


# ---------------------------------------------------------------------------------------------
# Hypothesis state machine: send, reconnect with resume, kill a subscriber
# ---------------------------------------------------------------------------------------------


class _SyncMember:
    """A blocking client (websockets.sync) for the state machine, which is synchronous."""

    def __init__(self, url: str, token: str, cid: str, cursor: int) -> None:
        self.url, self.token, self.cid = url, token, cid
        self.cursor = cursor
        self.view: list[int] = []  # every seq received, over all sessions, in order
        self.ws: Any = None

    def connect(self) -> None:
        self.ws = connect(self.url, open_timeout=10, close_timeout=1, max_size=2**22, legacy=True)
        self.ws.send(json.dumps({"type": "hello", "token": self.token, "resume": {self.cid: self.cursor}}))
        self.pump(until_subscribed=True)

    def pump(self, *, until_subscribed: bool = False, until_seq: int | None = None, timeout: float = 10.0) -> None:
        """Read what is there (or until the condition holds)."""
        deadline = time.monotonic() + timeout
        waiting = until_subscribed or until_seq is not None
        while True:
            if until_seq is not None and self.cursor >= until_seq:
                return
            left = deadline - time.monotonic()
            if waiting and left <= 0:
                raise TimeoutError(f"no progress: cursor {self.cursor}, wanted {until_seq}")
            try:
                raw = self.ws.recv(timeout=min(left, 0.5) if waiting else 0.01)
            except TimeoutError:
                if waiting:
                    continue
                return
            frame = json.loads(raw)
            if frame["type"] == "message" and frame["conversation_id"] == self.cid:
                seq = int(frame["message"]["seq"])
                self.view.append(seq)
                self.cursor = max(self.cursor, seq)
            elif frame["type"] == "subscribed" and until_subscribed:
                return

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None

    def kill(self) -> None:
        """Drop the connection without a close frame (the client vanished)."""
        if self.ws is not None:
            self.ws.socket.shutdown(socket.SHUT_RDWR)
            self.ws.close_socket()
            self.ws = None


def _state_machine(srv: LiveServer) -> type[RuleBasedStateMachine]:
    class DeliveryMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.token = srv.token(_user("sm"))
            self.writer = connect(srv.ws_url, open_timeout=10, close_timeout=1, legacy=True)
            self._call({"type": "hello", "token": self.token}, "welcome")
            self.cid = self._call({"type": "conversation.start", "ref": "s"}, "conversation")["conversation"]["id"]
            handed = self._call({"type": "handoff.request", "conversation_id": self.cid, "ref": "h"}, "conversation")
            self.base = int(handed["conversation"]["last_seq"])
            self.acked: list[int] = []
            self.members = [_SyncMember(srv.ws_url, self.token, self.cid, self.base) for _ in range(3)]
            for m in self.members:
                m.connect()

        def _call(self, frame: dict[str, Any], want: str) -> dict[str, Any]:
            self.writer.send(json.dumps(frame))
            while True:
                reply = json.loads(self.writer.recv(timeout=10))
                if reply["type"] == want and reply.get("ref", frame.get("ref")) == frame.get("ref"):
                    return dict(reply)
                assert reply["type"] != "error", reply

        @rule(n=st.integers(1, 4))
        def send(self, n: int) -> None:
            for _ in range(n):
                cmid = str(uuid.uuid4())
                self.writer.send(json.dumps({"type": "send", "conversation_id": self.cid, "client_msg_id": cmid,
                                             "text": f"sm {len(self.acked)}"}))
                while True:
                    reply = json.loads(self.writer.recv(timeout=10))
                    assert reply["type"] != "error", reply
                    if reply["type"] == "ack" and reply["client_msg_id"] == cmid:
                        self.acked.append(int(reply["seq"]))
                        break

        @rule(i=st.integers(0, 2))
        def read(self, i: int) -> None:
            if self.members[i].ws is not None:
                self.members[i].pump()

        @rule(i=st.integers(0, 2))
        def reconnect(self, i: int) -> None:
            m = self.members[i]
            if m.ws is not None:
                m.pump()
                m.close()
            m.connect()

        @rule(i=st.integers(0, 2))
        def kill(self, i: int) -> None:
            self.members[i].kill()

        @precondition(lambda self: any(m.ws is None for m in self.members))
        @rule()
        def revive(self) -> None:
            for m in self.members:
                if m.ws is None:
                    m.connect()
                    return

        @invariant()
        def seq_gap_free_and_every_view_a_prefix(self) -> None:
            order = list(range(self.base + 1, self.base + 1 + len(self.acked)))
            assert self.acked == order, f"acked seqs {self.acked} are not gap-free from {self.base + 1}"
            for i, m in enumerate(self.members):
                assert m.view == order[:len(m.view)], f"member {i} saw {m.view}, the database order is {order}"

        def teardown(self) -> None:
            try:
                want = self.base + len(self.acked)
                for m in self.members:
                    if m.ws is None:
                        m.connect()
                    m.pump(until_seq=want)
                self.seq_gap_free_and_every_view_a_prefix()
                for m in self.members:
                    assert len(m.view) == len(self.acked)
                with srv.admin() as admin:
                    stored = admin.get(f"/v1/conversations/{self.cid}/messages", params={"limit": 200}).json()
                seqs = [x["seq"] for x in stored["messages"]]
                assert seqs == list(range(1, want + 1)), seqs
            finally:
                for m in self.members:
                    m.close()
                self.writer.close()

    return DeliveryMachine


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_state_machine_send_reconnect_kill(node: LiveServer) -> None:
    machine = _state_machine(node)
    run_state_machine_as_test(machine, settings=settings(
        max_examples=10, stateful_step_count=25, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow]))
