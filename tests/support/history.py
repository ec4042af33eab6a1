"""A Jepsen-style history of a delivery test and its checker.

A test logs every operation as it happens, from the clients' point of view:

* ``send``    a client sent (conversation, client_msg_id, text);
* ``ack``     the server acknowledged it (message_id, seq);
* ``fail``    the server answered the send with an error (the message may or may not exist);
* ``open``    a client session (one socket) started, with the resume cursors it gave;
* ``receive`` a session got a ``message`` frame;
* ``close``   a session ended.

``check(db)`` compares the history with the rows in the database (the source of truth) and
counts the anomalies the delivery promises rule out:

* lost        an acknowledged message that is not in the database, or one that a member which
              stayed subscribed (or resumed after every disconnect) never received;
* duplicated  the same message delivered twice to one session, delivered again after a resume
              cursor that covered it, stored twice for one ``client_msg_id``, or acknowledged
              with two different ids;
* reordered   ``seq`` not strictly increasing per session per conversation;
* unexpected  a received message that was never sent, and that is not in the database, or
              received with content differing from the stored row.

Besides the counts the result keeps a few examples of each anomaly, for the failure message.
"""

import asyncio
import contextlib
import itertools
import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import websockets

__all__ = ["CheckResult", "DbMessage", "History", "Member", "Pipe", "db_messages", "visible"]


@dataclass(frozen=True, slots=True)
class DbMessage:
    conversation_id: str
    seq: int
    id: str
    text: str
    client_msg_id: str | None
    sender_id: str
    kind: str = "text"


@dataclass
class CheckResult:
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    unexpected: int = 0
    db_gaps: int = 0
    acked: int = 0
    received: int = 0
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def note(self, kind: str, what: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.examples[kind]) < 10:
            self.examples[kind].append(what)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.reordered or self.unexpected or self.db_gaps)

    def summary(self) -> str:
        head = (f"lost={self.lost} duplicated={self.duplicated} reordered={self.reordered} "
                f"unexpected={self.unexpected} db_gaps={self.db_gaps} (acked={self.acked}, "
                f"received={self.received})")
        lines = [head] + [f"  {k}: {v}" for k, v in self.examples.items() if v]
        return "\n".join(lines)

    def assert_ok(self) -> None:
        assert self.ok, self.summary()


@dataclass
class _Send:
    client: str
    conversation_id: str
    client_msg_id: str
    text: str
    acks: list[tuple[str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class _Session:
    id: int
    client: str
    resume: dict[str, int]
    received: list[tuple[str, int, str, str, str | None]] = field(default_factory=list)  # cid, seq, id, text, cmid
    closed: bool = False


class History:
    """Thread-safe: a test may log from several tasks or threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.sends: dict[tuple[str, str], _Send] = {}  # (conversation, client_msg_id)
        self.sessions: dict[int, _Session] = {}
        # (client, conversation) -> (seq after which everything is expected, role of the client)
        self.complete: dict[tuple[str, str], tuple[int, str]] = {}

    # -- logging -------------------------------------------------------------------------

    def send(self, client: str, conversation_id: str, client_msg_id: str, text: str) -> None:
        key = (conversation_id, client_msg_id.lower())
        with self._lock:
            prior = self.sends.get(key)
            if prior is None:
                self.sends[key] = _Send(client, conversation_id, client_msg_id.lower(), text)
            elif prior.text != text:
                raise ValueError(f"history: {client_msg_id} re-sent with another text; log it as a new key")

    def ack(self, frame: Mapping[str, Any]) -> None:
        key = (str(frame["conversation_id"]), str(frame["client_msg_id"]).lower())
        with self._lock:
            s = self.sends.get(key)
            if s is None:
                raise ValueError(f"history: ack for a send that was never logged: {dict(frame)}")
            s.acks.append((str(frame["message_id"]), int(frame["seq"])))

    def fail(self, conversation_id: str, client_msg_id: str, code: str) -> None:
        with self._lock:
            s = self.sends.get((conversation_id, client_msg_id.lower()))
            if s is not None:
                s.errors.append(code)

    def open(self, client: str, resume: Mapping[str, int] | None = None) -> int:
        with self._lock:
            sid = next(self._ids)
            self.sessions[sid] = _Session(sid, client, dict(resume or {}))
            return sid

    def receive(self, session: int, frame: Mapping[str, Any]) -> None:
        """Log one frame a session got; anything but a ``message`` is ignored."""
        if frame.get("type") != "message":
            return
        m = frame["message"]
        with self._lock:
            self.sessions[session].received.append(
                (str(frame["conversation_id"]), int(m["seq"]), str(m["id"]), str(m["text"]), m.get("client_msg_id")))

    def close(self, session: int) -> None:
        with self._lock:
            self.sessions[session].closed = True

    def expect_complete(self, client: str, conversation_id: str, after_seq: int = 0, *, role: str = "user") -> None:
        """``client`` stays subscribed to ``conversation_id`` (resuming after every disconnect
        with its last seen seq), so it must have received every message with seq > after_seq
        that its role may see (end users never get ``note`` messages)."""
        with self._lock:
            self.complete[(client, conversation_id)] = (after_seq, role)

    # -- queries ---------------------------------------------------------------------------

    def last_seq(self, client: str, conversation_id: str) -> int:
        """The highest seq ``client`` has seen in ``conversation_id`` over all its sessions."""
        with self._lock:
            seqs = [r[1] for s in self.sessions.values() if s.client == client
                    for r in s.received if r[0] == conversation_id]
        return max(seqs, default=0)

    def acked(self) -> list[tuple[str, str, str, int]]:
        """(conversation, client_msg_id, message_id, seq) of every acknowledged send."""
        with self._lock:
            return [(s.conversation_id, s.client_msg_id, *s.acks[0]) for s in self.sends.values() if s.acks]

    def unacked(self) -> list[tuple[str, str, str]]:
        """(conversation, client_msg_id, text) of every send without an ack (to retry)."""
        with self._lock:
            return [(s.conversation_id, s.client_msg_id, s.text) for s in self.sends.values() if not s.acks]

    def conversations(self) -> set[str]:
        with self._lock:
            cids = {s.conversation_id for s in self.sends.values()}
            cids |= {r[0] for s in self.sessions.values() for r in s.received}
            cids |= {c for _client, c in self.complete}
        return cids

    # -- the checker -----------------------------------------------------------------------

    def check(self, db: Mapping[str, Iterable[DbMessage]], *, require_all_acked: bool = False) -> CheckResult:
        """Compare with the database rows of every conversation involved (``db_messages``).

        With ``require_all_acked`` every logged send must have been acknowledged in the end
        (tests that retry until acked)."""
        res = CheckResult()
        rows: dict[str, list[DbMessage]] = {cid: sorted(ms, key=lambda m: m.seq) for cid, ms in db.items()}
        by_id: dict[str, DbMessage] = {m.id: m for ms in rows.values() for m in ms}
        by_key: dict[tuple[str, str], list[DbMessage]] = defaultdict(list)
        for ms in rows.values():
            for m in ms:
                if m.client_msg_id:
                    by_key[(m.conversation_id, m.client_msg_id.lower())].append(m)

        # The database itself: seq 1..n with no gap and no repeat, one row per client_msg_id.
        for cid, ms in rows.items():
            seqs = [m.seq for m in ms]
            if seqs != list(range(1, len(seqs) + 1)):
                res.note("db_gaps", f"{cid}: seqs {_short(seqs)}")
        for key, ms in by_key.items():
            if len(ms) > 1:
                res.note("duplicated", f"{key[1]} stored {len(ms)} times in {key[0]}")

        with self._lock:
            sends = list(self.sends.values())
            sessions = list(self.sessions.values())
            complete = dict(self.complete)

        # Acks: durable, and the same answer every time.
        for s in sends:
            if s.acks:
                res.acked += 1
                if len(set(s.acks)) > 1:
                    res.note("duplicated", f"{s.client_msg_id} acked differently: {sorted(set(s.acks))}")
                mid, seq = s.acks[0]
                row = by_id.get(mid)
                if row is None or row.seq != seq or row.conversation_id != s.conversation_id:
                    res.note("lost", f"acked {s.client_msg_id} ({mid}, seq {seq}) is not in the database")
                elif row.text != s.text:
                    res.note("unexpected", f"acked {s.client_msg_id} stored with another text")
            elif require_all_acked:
                res.note("lost", f"{s.client_msg_id} was never acknowledged (errors: {s.errors})")

        sent_keys = {(s.conversation_id, s.client_msg_id): s for s in sends}

        # Sessions: no duplicate, increasing seq, nothing made up, cursors respected.
        for sess in sessions:
            seen_ids: set[str] = set()
            last: dict[str, int] = dict(sess.resume)
            for cid, seq, mid, text, cmid in sess.received:
                res.received += 1
                if mid in seen_ids:
                    res.note("duplicated", f"session {sess.id} ({sess.client}, resumed {sess.resume}) got {mid} "
                                           f"(seq {seq}) twice: {_short([r[1] for r in sess.received])}")
                    continue
                seen_ids.add(mid)
                prev = last.get(cid)
                if prev is not None and seq <= prev:
                    if cid in sess.resume and seq <= sess.resume[cid]:
                        res.note("duplicated", f"session {sess.id} got seq {seq} although it resumed "
                                               f"{cid} after {sess.resume[cid]}")
                    else:
                        res.note("reordered", f"session {sess.id} ({sess.client}) got seq {seq} after {prev} "
                                              f"in {cid}")
                last[cid] = max(seq, prev or 0)
                row = by_id.get(mid)
                if row is None:
                    if not (cmid and (cid, str(cmid).lower()) in sent_keys):
                        res.note("unexpected", f"session {sess.id} got {mid} (seq {seq}) that nobody sent")
                    else:
                        res.note("unexpected", f"session {sess.id} got {mid} (seq {seq}) that is not stored")
                elif (row.seq, row.text, row.conversation_id) != (seq, text, cid):
                    res.note("unexpected", f"session {sess.id} got {mid} as seq {seq} but it is stored as "
                                           f"seq {row.seq}")

        # Members that stayed (or kept resuming): every stored message after their start.
        for (client, cid), (after, role) in complete.items():
            got = {r[1] for sess in sessions if sess.client == client for r in sess.received if r[0] == cid}
            for m in visible(rows.get(cid, []), role):
                if m.seq > after and m.seq not in got:
                    res.note("lost", f"{client} never received seq {m.seq} of {cid}")
        return res


def visible(rows: Iterable[DbMessage], role: str) -> list[DbMessage]:
    """The stored messages a member of ``role`` is sent (end users never get notes)."""
    return [m for m in rows if role != "user" or m.kind != "note"]


def _short(seqs: list[int]) -> str:
    return str(seqs) if len(seqs) <= 20 else f"{seqs[:10]} ... {seqs[-10:]} ({len(seqs)} rows)"


async def db_messages(database_url: str, conversation_ids: Iterable[str]) -> dict[str, list[DbMessage]]:
    """Every stored message of the conversations, read directly from the database."""
    from sqlmodel import col, select

    from server.core.db import Database
    from server.core.models import Message

    cids = sorted(set(conversation_ids))
    db = Database(database_url, pool_size=2)
    try:
        out: dict[str, list[DbMessage]] = {cid: [] for cid in cids}
        async with db.session() as s:
            for i in range(0, len(cids), 200):
                q = (select(Message).where(col(Message.conversation_id).in_(cids[i:i + 200]))
                     .order_by(col(Message.conversation_id), col(Message.seq)))
                for m in (await s.exec(q)).all():
                    out[m.conversation_id].append(DbMessage(m.conversation_id, m.seq, m.id, m.text,
                                                            m.client_msg_id, m.sender_id, m.kind))
        return out
    finally:
        await db.dispose()


class Member:
    """One logical member of a conversation (a device of the user, or an agent) that logs every
    frame it gets to a :class:`History` and, like a correct client, resumes after every
    disconnect from its cursor.

    The cursor of a conversation is the highest seq seen, or with ``contiguous`` the highest
    seq up to which nothing is missing (what a client does when every seq above its start is
    visible to it, e.g. in a conversation with no notes: it detects a gap and resyncs)."""

    def __init__(self, history: History, name: str, ws_url: str, token: str, cursors: Mapping[str, int], *,
                 contiguous: bool = False) -> None:
        self.history = history
        self.name = name
        self.ws_url = ws_url
        self.token = token
        self.cursors: dict[str, int] = dict(cursors)
        self.contiguous = contiguous
        self.ws: Any = None
        self.session: int | None = None
        self.reader: Any = None
        self.frames: list[dict[str, Any]] = []  # everything but messages, for the test to inspect
        self.live: list[tuple[float, str, int]] = []  # (monotonic time, conversation, seq) of messages
        self.subscribed: set[str] = set()
        self.connects = 0
        self._progress: Any = None

    @property
    def connected(self) -> bool:
        return self.reader is not None and not self.reader.done()

    async def connect(self, *, timeout: float = 10.0, wait_subscribed: bool = True) -> dict[str, Any]:
        """Open a session resuming every conversation from its cursor; returns the welcome
        frame (or the error that refused the session)."""
        self._progress = asyncio.Event()
        self.subscribed = set()
        ws = await websockets.connect(self.ws_url, max_size=2**22, ping_interval=None, open_timeout=timeout,
                                      close_timeout=2)
        resume = dict(self.cursors)
        try:
            await ws.send(json.dumps({"type": "hello", "token": self.token, "resume": resume}))
            first = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        except BaseException:
            await ws.close()  # a node that dies or stalls before its welcome: no socket left open
            raise
        if first.get("type") != "welcome":
            await ws.close()
            return dict(first)
        self.ws = ws
        self.connects += 1
        self.session = self.history.open(self.name, resume)
        self.reader = asyncio.create_task(self._read(ws, self.session))
        if wait_subscribed:
            await self.wait(lambda: set(resume) <= self.subscribed, timeout)
        return dict(first)

    async def _read(self, ws: Any, session: int) -> None:
        try:
            async for raw in ws:
                frame = json.loads(raw)
                ftype = frame.get("type")
                if ftype == "message":
                    self.history.receive(session, frame)
                    cid, seq = frame["conversation_id"], int(frame["message"]["seq"])
                    self.live.append((time.monotonic(), cid, seq))
                    cur = self.cursors.get(cid)
                    if cur is not None and (seq == cur + 1 or (not self.contiguous and seq > cur)):
                        self.cursors[cid] = seq
                else:
                    self.frames.append(frame)
                    if ftype == "subscribed":
                        self.subscribed.add(frame["conversation_id"])
                self._progress.set()
        except (websockets.ConnectionClosed, OSError):
            pass
        finally:
            self.history.close(session)
            self._progress.set()

    async def wait(self, predicate: Any, timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds (checked after every frame)."""

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"{self.name}: condition not reached in {timeout}s (cursors {self.cursors})")
            if not self.connected and not predicate():
                raise ConnectionError(f"{self.name}: disconnected while waiting (frames {self.frames[-3:]})")
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), min(left, 0.5))

    async def send(self, frame: Mapping[str, Any]) -> None:

        await self.ws.send(json.dumps(dict(frame)))

    async def disconnect(self, *, abrupt: bool = False) -> None:
        """Close cleanly, or drop the TCP connection without a close frame."""

        if self.ws is None:
            return
        if abrupt:
            self.ws.transport.abort()
        else:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 3)
        if self.reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.reader, 5)
        self.ws = None

    async def catch_up(self, last_seqs: Mapping[str, int], timeout: float = 15.0) -> None:
        """(Re)connect if needed and wait until every cursor reached ``last_seqs``."""
        if not self.connected:
            await self.connect(timeout=timeout)
        await self.wait(lambda: all(self.cursors.get(c, 0) >= s for c, s in last_seqs.items()), timeout)


class Pipe:
    """A socket for pipelined sends: each ``send`` waits for the ack or error carrying its
    ``client_msg_id`` while other sends are in flight. Logs to a :class:`History` if given."""

    def __init__(self, ws: Any, history: History | None = None, name: str = "pipe") -> None:
        self.ws = ws
        self.history = history
        self.name = name
        self.waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.frames: list[dict[str, Any]] = []
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, ws_url: str, token: str, history: History | None = None, name: str = "pipe") -> "Pipe":
        ws = await websockets.connect(ws_url, max_size=2**22, ping_interval=None, open_timeout=10, close_timeout=2)
        try:
            await ws.send(json.dumps({"type": "hello", "token": token}))
            welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert welcome["type"] == "welcome", welcome
        except BaseException:
            await ws.close()  # a node that dies or stalls before its welcome: no socket left open
            raise
        return cls(ws, history, name)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                cmid = frame.get("client_msg_id")
                if frame.get("type") in ("ack", "error") and cmid:
                    fut = self.waiters.pop(str(cmid).lower(), None)
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
                        continue
                if frame.get("type") != "message":
                    self.frames.append(frame)
                    ref = frame.get("ref")
                    fut = self.waiters.pop(f"ref:{ref}", None) if ref else None
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
        except (websockets.ConnectionClosed, OSError):
            pass
        finally:
            for fut in self.waiters.values():
                if not fut.done():
                    fut.set_exception(ConnectionError(f"{self.name} closed"))
            self.waiters.clear()

    async def request(self, frame: Mapping[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """Send a frame with a ``ref`` and wait for the first reply carrying that ref."""
        ref = str(frame["ref"])
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiters[f"ref:{ref}"] = fut
        await self.ws.send(json.dumps(dict(frame)))
        return await asyncio.wait_for(fut, timeout)

    async def send(self, conversation_id: str, client_msg_id: str, text: str, timeout: float = 30.0,
                   *, log: bool = True) -> dict[str, Any]:
        """Send a message; returns its ack or error frame (logged to the history)."""
        key = client_msg_id.lower()
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiters[key] = fut
        if self.history is not None and log:
            self.history.send(self.name, conversation_id, client_msg_id, text)
        try:
            await self.ws.send(json.dumps({"type": "send", "conversation_id": conversation_id,
                                           "client_msg_id": client_msg_id, "text": text}))
        except BaseException:
            self.waiters.pop(key, None)  # nobody will wait for it (its ConnectionError would go unread)
            raise
        reply = await asyncio.wait_for(fut, timeout)
        if self.history is not None and log:
            if reply["type"] == "ack":
                self.history.ack(reply)
            else:
                self.history.fail(conversation_id, client_msg_id, str(reply.get("code")))
        return reply

    async def quiet_conversation(self) -> tuple[str, int]:
        """Start a conversation and hand it to the (empty) human queue at once, so the AI agent
        posts nothing in it; returns (id, last seq after the hand-off's own system rows)."""
        ref = uuid.uuid4().hex[:8]
        started = await self.request({"type": "conversation.start", "ref": ref})
        cid = str(started["conversation"]["id"])
        handed = await self.request({"type": "handoff.request", "conversation_id": cid, "ref": ref + "h"})
        assert handed["conversation"]["status"] in ("queued", "assigned"), handed
        return cid, int(handed["conversation"]["last_seq"])

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 3)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.reader, 3)
