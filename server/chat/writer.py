"""Group commit: the one write path for messages. Every send of the node (sockets, REST, the AI
agent, agents) queues a :class:`Draft` here; a flusher takes what is waiting (up to
``max_batch`` messages, after at most ``max_wait_us``) and writes it in ONE transaction, then
answers each sender. While one batch commits, the next one fills: under load batches grow by
themselves, and an idle server writes a lone message at once.

The batch is plain SQLAlchemy Core run by :meth:`server.core.db.Database.run_in_transaction`
(SQLite: one hop to the writer thread for the whole transaction; PostgreSQL: one round trip per
statement, rows sent together): the conversations locked in id order with their tenant, the
idempotency keys looked up once, then per table one multi-row statement (seq counters, status
changes, messages, participants' read marks, outbox rows).

The promises of the one-message transaction hold for each message of a batch:
- its sender hears back only after the commit that holds its row (a failed commit fails them all,
  and none was acknowledged);
- a ``client_msg_id`` seen before (in the database, or earlier in the same batch) answers with the
  first message, or ``conflict`` if the text differs; nothing is written for it;
- ``seq`` is the conversation's counter plus one, in batch order, gap-free;
- a message that fails (not found, refused, a bad attachment, a row the database refuses) fails
  alone: validation happens per message before anything is written, and a refusal by the database
  makes the writer roll the batch back and write each message in its own savepoint."""

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, any_, bindparam
from sqlalchemy import select as sa_select
from sqlalchemy import update as sa_update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, StatementError

from server.accounts.auth import Principal
from server.attachments.service import claim_for_message, load_for_message
from server.chat.events import ConversationEvent
from server.chat.lifecycle import (
    Action,
    Actor,
    ActorKind,
    Change,
    ConversationState,
    Status,
    TransitionRefused,
    transition,
)
from server.core.db import Database
from server.core.models import Conversation, Message, OutboxRow, Participant, Tenant, new_id, utcnow
from server.errors import Conflict, NotFound, ParleyError, Unavailable

__all__ = ["Draft", "MessageWriter", "Sender", "Written", "can_see", "conversation_event", "conversation_state",
           "push_event_row", "take_change"]

log = logging.getLogger("parley.chat.writer")

FaultHook = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Sender:
    kind: str  # user | agent | bot | system
    id: str
    name: str | None = None

    @classmethod
    def of(cls, p: Principal) -> "Sender":
        return cls(kind=p.sender_kind, id=p.id, name=p.name)

    @property
    def actor(self) -> Actor:
        return Actor(ActorKind(self.kind), self.id, self.name)


@dataclass(slots=True)
class Draft:
    """One message to write, validated (text, key) by the caller."""

    tenant_id: str
    conversation_id: str
    sender: Sender
    text: str
    client_msg_id: str | None = None
    kind: str = "text"
    citations: list[dict[str, Any]] = field(default_factory=list)
    draft_id: str | None = None
    principal: Principal | None = None
    attachments: list[str] = field(default_factory=list)
    # other columns of the message, validated by the caller (its quote and reply_to_id, its rich content)
    extra: dict[str, Any] = field(default_factory=dict)
    future: "asyncio.Future[Written] | None" = None


@dataclass(frozen=True, slots=True)
class Written:
    message: Message
    created: bool
    changed: Conversation | None = None  # the conversation, when this message changed its status
    event: ConversationEvent | None = None
    bot_work: bool = False  # the AI agent has a message to answer


Outcome = Written | ParleyError


def can_see(p: Principal, conv: Conversation) -> bool:
    if conv.tenant_id != p.tenant_id:
        return False
    if p.role == "user":
        return conv.user_id == p.id
    return True


def conversation_state(conv: Conversation, reopen_cooldown_s: int) -> ConversationState:
    return ConversationState(id=conv.id, tenant_id=conv.tenant_id, user_id=conv.user_id, status=Status(conv.status),
                             assignee_id=conv.assignee_id, last_agent_id=conv.last_agent_id,
                             resolved_at=conv.resolved_at, handoff_reason=conv.handoff_reason,
                             reopen_cooldown_s=reopen_cooldown_s)


def take_change(conv: Conversation, change: Change, now: datetime) -> None:
    """Copy a change onto the conversation row."""
    conv.status, conv.assignee_id, conv.last_agent_id = change.status, change.assignee_id, change.last_agent_id
    conv.resolved_at, conv.handoff_reason = change.resolved_at, change.handoff_reason
    if change.queued_at is not None:
        conv.queued_at = change.queued_at
    if change.clear_bot_offer:
        conv.bot_offered_human = False


def conversation_event(conv: Conversation, action: Action, actor: Actor, change: Change) -> ConversationEvent:
    return ConversationEvent(
        tenant_id=conv.tenant_id, conversation_id=conv.id, user_id=conv.user_id, action=action, actor_id=actor.id,
        before=change.before, status=change.status, assignee_id=change.assignee_id, reason=change.handoff_reason,
        follow=change.follow, republish_queue=change.republish_queue, offer_waiting=change.offer_waiting,
        summarize=change.summarize, stop_bot=change.stop_bot)


def push_event_row(conv: Conversation, change: Change, now: datetime) -> dict[str, Any] | None:
    """The outbox row by which the push engine's behaviour stream hears of a status change, written
    in the transaction of the change itself: no commit in between can lose it."""
    if change.push is None:
        return None
    name = change.push.name
    return {"tenant_id": conv.tenant_id, "topic": "push", "created_at": now, "available_at": now,
            "payload": {"kind": "chat.event", "event_id": f"{conv.id}:{name}:{conv.last_seq}", "user_id": conv.user_id,
                        "name": name, "properties": dict(change.push.properties)}}


# The statements, built once (SQLAlchemy caches their compiled form).
_CONV = Conversation.__table__  # type: ignore[attr-defined]
_MSG = Message.__table__  # type: ignore[attr-defined]
_OUTBOX = OutboxRow.__table__  # type: ignore[attr-defined]
_PART = Participant.__table__  # type: ignore[attr-defined]
_TENANT = Tenant.__table__  # type: ignore[attr-defined]
_CONV_COLUMNS = tuple(c.name for c in _CONV.columns)
_MESSAGE_COLUMNS = tuple(c.name for c in _MSG.columns)
# The columns a message row gets here by name; any other column of ``Message`` (one added later)
# gets its model default on every row, so that a new column needs nothing on this path.
_MESSAGE_SET_HERE = frozenset({"id", "tenant_id", "conversation_id", "seq", "kind", "sender_kind", "sender_id",
                               "sender_name", "text", "citations", "client_msg_id", "draft_id", "attachments",
                               "created_at"})
_MESSAGE_OTHER_FIELDS = tuple((name, f) for name, f in Message.model_fields.items()
                              if name in _MESSAGE_COLUMNS and name not in _MESSAGE_SET_HERE)


def _among(column: Any, name: str, dialect: str) -> Any:
    """``column IN (...)``: on PostgreSQL ``= ANY(array)``, one statement text (one prepared
    statement) whatever the batch's size; SQLite expands the list."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


def _lock_conversations(dialect: str) -> Any:
    # Locked in id order, so that two batches (two nodes) touching the same conversations cannot deadlock.
    return (sa_select(_CONV, _TENANT.c.name.label("tenant_name"),
                      _TENANT.c.reopen_cooldown_s.label("tenant_reopen_cooldown_s"))
            .join(_TENANT, _TENANT.c.id == _CONV.c.tenant_id)
            .where(_among(_CONV.c.id, "cids", dialect))
            .order_by(_CONV.c.id)
            .with_for_update(of=_CONV))


def _existing(dialect: str) -> Any:
    return sa_select(_MSG).where(_among(_MSG.c.conversation_id, "cids", dialect),
                                 _among(_MSG.c.client_msg_id, "cmids", dialect))


_LOCK_CONVERSATIONS = {d: _lock_conversations(d) for d in ("sqlite", "postgresql")}
_EXISTING = {d: _existing(d) for d in ("sqlite", "postgresql")}
_FIND_ONE = sa_select(_MSG).where(_MSG.c.conversation_id == bindparam("cid"), _MSG.c.sender_kind == bindparam("skind"),
                                  _MSG.c.sender_id == bindparam("sid"), _MSG.c.client_msg_id == bindparam("cmid"))
_BUMP = (sa_update(_CONV).where(_CONV.c.id == bindparam("cid"))
         .values(last_seq=_CONV.c.last_seq + bindparam("n"), updated_at=bindparam("now")))
UPDATE_STATUS = sa_update(_CONV).where(_CONV.c.id == bindparam("cid")).values(
    status=bindparam("new_status"), assignee_id=bindparam("new_assignee"), last_agent_id=bindparam("new_last_agent"),
    resolved_at=bindparam("new_resolved_at"))
_INSERT_MESSAGES = _MSG.insert()
_INSERT_OUTBOX = _OUTBOX.insert()


def _read_mark(insert: Any) -> Any:
    """A participant's read mark moves up to its own message (the row is made on its first one)."""
    stmt = insert(_PART)
    return stmt.on_conflict_do_update(index_elements=[_PART.c.conversation_id, _PART.c.kind, _PART.c.participant_id],
                                      set_={"read_seq": stmt.excluded.read_seq},
                                      where=_PART.c.read_seq < stmt.excluded.read_seq)


_READ_MARK = {"sqlite": _read_mark(sqlite_insert), "postgresql": _read_mark(pg_insert)}


class _Redo(Exception):
    """The database refused a row of the batch: write each message alone."""


@dataclass(slots=True)
class _Batch:
    """The rows one transaction writes, gathered message by message."""

    now: datetime
    bumps: dict[str, int] = field(default_factory=dict)
    changed: dict[str, Conversation] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    claims: list[tuple[str, list[str]]] = field(default_factory=list)
    reads: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    outbox: list[dict[str, Any]] = field(default_factory=list)

    def write(self, conn: Connection) -> None:
        if self.bumps:
            conn.execute(_BUMP, [{"cid": cid, "n": n, "now": self.now} for cid, n in self.bumps.items()])
        if self.changed:
            conn.execute(UPDATE_STATUS, [
                {"cid": c.id, "new_status": c.status, "new_assignee": c.assignee_id,
                 "new_last_agent": c.last_agent_id, "new_resolved_at": c.resolved_at} for c in self.changed.values()])
        if self.messages:
            conn.execute(_INSERT_MESSAGES, self.messages)
        for message_id, ids in self.claims:
            claim_for_message(conn, message_id, ids)
        if self.reads:
            conn.execute(_READ_MARK[conn.dialect.name], list(self.reads.values()))
        if self.outbox:
            conn.execute(_INSERT_OUTBOX, self.outbox)


@dataclass(slots=True)
class _Locked:
    """A conversation the batch holds (its row locked on PostgreSQL), with its tenant."""

    conv: Conversation
    tenant_name: str
    reopen_cooldown_s: int
    last_seq: int = 0
    unchanged_for: dict[tuple[Actor, bool], Change] = field(default_factory=dict)


class MessageWriter:
    def __init__(self, db: Database, *, max_batch: int = 256, max_wait_us: int = 0, in_flight: int = 4,
                 max_attachments: int = 10, chat_push_delay_s: float = 60.0,
                 fault_hook: FaultHook | None = None) -> None:
        self.db = db
        self.max_batch = max(1, max_batch)
        self.max_wait_s = max(0, max_wait_us) / 1e6
        # SQLite has one writer: a second batch would only wait for the lock with fewer messages in it.
        self.in_flight = 1 if db.is_sqlite else max(1, in_flight)
        self.max_attachments = max_attachments
        self.chat_push_delay_s = chat_push_delay_s
        self._fault = fault_hook or (lambda _point: None)
        self._queue: deque[Draft] = deque()
        self._flushers: set[asyncio.Task[None]] = set()  # strong references to the running flushers
        self._running = 0
        self.batches = 0  # for the benchmarks: how many transactions wrote how many messages
        self.written = 0

    async def write(self, draft: Draft) -> Written:
        """Queue one message; returns once the transaction holding it has committed, or raises
        the message's own error (``not_found``, ``conflict``, ...) or the batch's (database down)."""
        loop = asyncio.get_running_loop()
        draft.future = loop.create_future()
        self._queue.append(draft)
        if self._running < self.in_flight:
            self._running += 1  # counted here and uncounted by the flusher itself, never by a callback later
            task = loop.create_task(self._flush())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        return await draft.future

    async def _flush(self) -> None:
        try:
            while self._queue:
                if self.max_wait_s and len(self._queue) < self.max_batch:
                    await asyncio.sleep(self.max_wait_s)
                else:
                    await asyncio.sleep(0)  # one loop step: the frames already read queue their sends too
                batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
                if batch:
                    await self._commit(batch)
        finally:
            self._running -= 1

    async def _commit(self, batch: list[Draft]) -> None:
        try:
            try:
                outcomes = await self.db.run_in_transaction(self._write_batch, batch)
            except _Redo:
                outcomes = await self.db.run_in_transaction(self._write_each, batch)
        except BaseException as exc:  # whatever failed the transaction fails each of its messages
            # (a cancelled flusher, the server stopping, must not look like a cancelled sender)
            err = exc if isinstance(exc, Exception) else Unavailable("the server is stopping", retry_after_ms=1000)
            for d in batch:
                if d.future is not None and not d.future.done():
                    d.future.set_exception(err)
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        for d, outcome in zip(batch, outcomes, strict=True):
            if d.future is None or d.future.done():
                continue  # the sender went away; its message is stored and a retry gets its ack
            if isinstance(outcome, Written):
                self.written += outcome.created
                d.future.set_result(outcome)
            else:
                d.future.set_exception(outcome)

    # ---- in the transaction (synchronous: the writer thread, or the greenlet bridge) ---------

    def _write_batch(self, conn: Connection, batch: list[Draft]) -> list[Outcome]:
        try:
            outcomes, wrote = self._write(conn, batch)
        except ParleyError as exc:  # an attachment another message took: find which, alone
            raise _Redo from exc
        except StatementError as exc:
            if _connectivity(exc):
                raise
            raise _Redo from exc
        if wrote:
            self._fault("before_commit")
        return outcomes

    def _write_each(self, conn: Connection, batch: list[Draft]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        wrote = False
        for d in batch:
            try:
                with conn.begin_nested():
                    (outcome,), one = self._write(conn, [d])
                wrote = wrote or one
            except ParleyError as exc:
                outcome = exc
            except IntegrityError as exc:
                # A concurrent send of the same key (another node) committed first: answer with it.
                outcome = self._first_of(conn, d, exc)
            except StatementError as exc:
                if _connectivity(exc):
                    raise
                log.warning("message refused by the database: %s", exc)
                outcome = ParleyError("the database refused this message", code="internal")
            outcomes.append(outcome)
        if wrote:
            self._fault("before_commit")
        return outcomes

    def _first_of(self, conn: Connection, d: Draft, exc: IntegrityError) -> Outcome:
        row = conn.execute(_FIND_ONE, {"cid": d.conversation_id, "skind": d.sender.kind, "sid": d.sender.id,
                                       "cmid": d.client_msg_id}).first() if d.client_msg_id else None
        if row is None:
            log.warning("message refused by the database: %s", exc)
            return ParleyError("the database refused this message", code="internal")
        try:
            return _duplicate(_loaded(Message, row._mapping), d)
        except ParleyError as err:
            return err

    def _write(self, conn: Connection, drafts: list[Draft]) -> tuple[list[Outcome], bool]:
        batch = _Batch(now=utcnow())
        dialect = conn.dialect.name
        cids = list({d.conversation_id for d in drafts})
        locked = {row.id: _Locked(_conversation(row._mapping), row.tenant_name, row.tenant_reopen_cooldown_s,
                                  row.last_seq)
                  for row in conn.execute(_LOCK_CONVERSATIONS[dialect], {"cids": cids})}
        keyed = [d for d in drafts if d.client_msg_id is not None]
        seen: dict[tuple[str, str, str, str], Message] = {}
        if keyed:
            for row in conn.execute(_EXISTING[dialect], {"cids": list({d.conversation_id for d in keyed}),
                                                "cmids": list({d.client_msg_id for d in keyed})}):
                seen[(row.conversation_id, row.sender_kind, row.sender_id, row.client_msg_id)] = _loaded(
                    Message, row._mapping)
        outcomes: list[Outcome] = []
        for d in drafts:
            try:
                outcomes.append(self._plan(conn, batch, d, locked.get(d.conversation_id), seen))
            except ParleyError as exc:
                outcomes.append(exc)
        batch.write(conn)
        return outcomes, bool(batch.messages)

    def _plan(self, conn: Connection, batch: _Batch, d: Draft, locked: _Locked | None,
              seen: dict[tuple[str, str, str, str], Message]) -> Written:
        """One message's rows, or its own error (nothing of it is added then)."""
        if locked is None or locked.conv.tenant_id != d.tenant_id or (
                d.principal is not None and not can_see(d.principal, locked.conv)):
            raise NotFound("conversation not found")
        conv = locked.conv
        key = (d.conversation_id, d.sender.kind, d.sender.id, d.client_msg_id or "")
        if d.client_msg_id is not None and key in seen:
            return _duplicate(seen[key], d)
        now = batch.now
        change = self._transition(locked, d, now) if d.kind == "text" else None
        files = load_for_message(conn, tenant_id=d.tenant_id, conversation_id=d.conversation_id,
                                 sender_kind=d.sender.kind, sender_id=d.sender.id, ids=d.attachments,
                                 max_per_message=self.max_attachments) if d.attachments else None
        # Nothing below refuses the message: from here on its rows join the batch.
        seq = locked.last_seq = locked.last_seq + 1
        batch.bumps[conv.id] = batch.bumps.get(conv.id, 0) + 1
        changed: Conversation | None = None
        event: ConversationEvent | None = None
        if change is not None and change.changed:
            conv.last_seq, conv.updated_at = seq, now
            take_change(conv, change, now)
            batch.changed[conv.id] = conv
            # as this message left it (the later ones of the batch move last_seq on)
            changed = _conversation({c: getattr(conv, c) for c in _CONV_COLUMNS})
            event = conversation_event(conv, Action.WRITE, d.sender.actor, change)
            if (push := push_event_row(conv, change, now)) is not None:
                batch.outbox.append(push)
        row = {name: f.get_default(call_default_factory=True) for name, f in _MESSAGE_OTHER_FIELDS}
        row.update(id=new_id(), tenant_id=d.tenant_id, conversation_id=d.conversation_id, seq=seq, kind=d.kind,
                   sender_kind=d.sender.kind, sender_id=d.sender.id, sender_name=d.sender.name, text=d.text,
                   citations=d.citations, client_msg_id=d.client_msg_id, draft_id=d.draft_id, created_at=now,
                   attachments=files)
        row.update({k: v for k, v in d.extra.items() if k in _MESSAGE_COLUMNS and k not in _MESSAGE_SET_HERE})
        batch.messages.append(row)
        msg = _loaded(Message, row)
        if d.client_msg_id is not None:
            seen[key] = msg
        if d.attachments:
            batch.claims.append((msg.id, d.attachments))
        if d.sender.kind in ("user", "agent"):
            batch.reads[(conv.id, d.sender.kind, d.sender.id)] = {
                "conversation_id": conv.id, "kind": d.sender.kind, "participant_id": d.sender.id,
                "tenant_id": conv.tenant_id, "read_seq": seq, "joined_at": now}
        bot_work = d.sender.kind == "user" and conv.status == Status.BOT and d.kind == "text"
        if bot_work:
            batch.outbox.append({"tenant_id": d.tenant_id, "topic": "bot", "available_at": now, "created_at": now,
                                 "payload": {"conversation_id": conv.id, "message_id": msg.id, "seq": seq}})
        if d.sender.kind in ("agent", "bot") and d.kind == "text":
            batch.outbox.append(self._reply_push(conv, d, msg, locked.tenant_name, files))
        return Written(msg, True, changed, event, bot_work)

    @staticmethod
    def _transition(locked: _Locked, d: Draft, now: datetime) -> Change:
        """Writing is a transition too: an agent takes an unowned conversation, a user reopens a
        resolved one, nobody writes into another agent's. A writer whose last message changed
        nothing changes nothing with the next one either (until the conversation moves)."""
        conv, actor = locked.conv, d.sender.actor
        if (actor, d.principal is None) in locked.unchanged_for:
            return locked.unchanged_for[(actor, d.principal is None)]
        cooldown = locked.reopen_cooldown_s if conv.status == Status.RESOLVED and d.sender.kind == "user" else 0
        try:
            change = transition(conversation_state(conv, cooldown), Action.WRITE, actor, now)
        except TransitionRefused:
            if d.principal is not None or d.sender.kind == "bot":
                raise
            # A server-side write in an agent's name (no principal) is trusted as before.
            change = transition(conversation_state(conv, cooldown), Action.WRITE, Actor(ActorKind.SYSTEM, "system"),
                                now)
        if change.changed:
            locked.unchanged_for.clear()
        else:
            locked.unchanged_for[(actor, d.principal is None)] = change
        return change

    def _reply_push(self, conv: Conversation, d: Draft, msg: Message, tenant_name: str,
                    files: list[dict[str, Any]] | None) -> dict[str, Any]:
        now = msg.created_at
        return {"tenant_id": d.tenant_id, "topic": "push", "created_at": now,
                "available_at": now + timedelta(seconds=self.chat_push_delay_s),
                "payload": {"kind": "chat.reply", "conversation_id": conv.id, "message_id": msg.id,
                            "user_id": conv.user_id, "sender_name": d.sender.name or "", "tenant_name": tenant_name,
                            "text": (d.text or " ".join("📎 " + f["name"] for f in files or []))[:200],
                            "seq": msg.seq}}


M = TypeVar("M")


def _loaded(model: type[M], values: Any) -> M:
    """An instance made the way the ORM makes one it loads (no validation, no change events):
    constructing SQLModel instances cost more than the SQL of the batch."""
    obj: M = model._sa_class_manager.new_instance()  # type: ignore[attr-defined]
    obj.__dict__.update(values)
    obj.__pydantic_fields_set__ = set(values.keys())  # type: ignore[attr-defined]
    return obj


def _conversation(values: Any) -> Conversation:
    return _loaded(Conversation, {c: values[c] for c in _CONV_COLUMNS})


def _duplicate(first: Message, d: Draft) -> Written:
    """A key seen before answers with its first message, if it is the same message."""
    if first.text != d.text:
        raise Conflict("client_msg_id was already used with a different text")
    if [a["id"] for a in first.attachments or []] != d.attachments:
        raise Conflict("client_msg_id was already used with different attachments")
    return Written(first, False)


def _connectivity(exc: StatementError) -> bool:
    return isinstance(exc, OperationalError | InterfaceError) or bool(getattr(exc, "connection_invalidated", False))
