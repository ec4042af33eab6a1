"""The chat service: the only write path for messages and conversation state. Each write is
one transaction (seq from the conversation's counter row, the message, the idempotency key,
the outbox rows); events are published on the bus only after the commit."""

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy import insert as sa_insert
from sqlmodel import col, select

from server.accounts.auth import Principal
from server.chat.events import BotWork, ConversationEvent, EventBridge
from server.chat.lifecycle import OPEN_STATUSES, Action, Actor, ActorKind, Change, Status, transition
from server.chat.replies import quote_for
from server.chat.rich import validate_rich
from server.chat.writer import (
    Draft,
    MessageWriter,
    Sender,
    can_see,
    conversation_event,
    conversation_state,
    push_event_row,
    take_change,
)
from server.core.db import Database
from server.core.events import Dispatcher
from server.core.models import Agent, Conversation, Message, OutboxRow, Participant, User, utcnow
from server.core.wire import MESSAGE_PREFIX, topic_agents, topic_conversation, topic_queue, topic_user
from server.desk.models import ConversationLabel
from server.errors import BadInput, Conflict, NotFound, TooLong
from server.fanout import Bus

__all__ = [
    "MESSAGE_PREFIX",
    "OPEN_STATUSES",
    "ChatService",
    "Posted",
    "Sender",
    "actor_of",
    "conversation_frame",
    "conversation_json",
    "iso",
    "message_frame",
    "message_json",
    "topic_agents",
    "topic_conversation",
    "topic_queue",
    "topic_user",
    "validate_text",
]

_SURROGATE = re.compile("[\ud800-\udfff]")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")


def actor_of(p: Principal | None) -> Actor:
    """Who acts on a conversation: an agent, a user, or (an admin, the server) the system."""
    if p is None:
        return Actor(ActorKind.SYSTEM, "system")
    kind = {"agent": ActorKind.AGENT, "user": ActorKind.USER}.get(p.role, ActorKind.SYSTEM)
    return Actor(kind, p.id, p.name)


def validate_text(text: str, max_chars: int) -> str:
    if not isinstance(text, str):
        raise BadInput("text must be a string", field="text")
    if "\x00" in text:
        # PostgreSQL cannot store NUL; refusing it on every backend keeps them identical.
        raise BadInput("text contains a NUL character", field="text")
    if _SURROGATE.search(text):
        raise BadInput("text contains an unpaired surrogate", field="text")
    if not text.strip():
        raise BadInput("text is empty", code="empty_message", field="text")
    if len(text) > max_chars:
        raise TooLong(f"text is longer than {max_chars} characters", field="text")
    return text


def validate_client_msg_id(value: str) -> str:
    if not isinstance(value, str) or not _UUID.match(value):
        raise BadInput("client_msg_id must be a UUID", field="client_msg_id")
    # One spelling per key: with or without dashes, any case, it is the same UUID.
    return str(uuid.UUID(value))


def message_json(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": m.id,
        "seq": m.seq,
        "kind": m.kind,
        "sender": {"kind": m.sender_kind, "id": m.sender_id, "name": m.sender_name},
        "text": m.text,
        "citations": m.citations or [],
        "created_at": _iso(m.created_at),
    }
    if m.client_msg_id:
        out["client_msg_id"] = m.client_msg_id
    if m.draft_id:
        out["draft_id"] = m.draft_id
    if m.attachments and m.deleted_at is None:
        out["attachments"] = m.attachments
    if m.reply_to_id is not None and m.quote:
        out["reply_to"] = m.quote
    if m.rich and m.deleted_at is None:
        out["rich"] = m.rich
    if m.edited_at is not None:
        out["edited_at"] = _iso(m.edited_at)
    if m.deleted_at is not None:
        out["deleted"] = True
        out["deleted_at"] = _iso(m.deleted_at)
    return out


def message_frame(m: Message) -> str:
    # ``seq`` leads the frame so fan-out can read it without parsing JSON (see fanout.local).
    return f'{MESSAGE_PREFIX}{m.seq}, "conversation_id": {json.dumps(m.conversation_id)}, ' \
           f'"message": {json.dumps(message_json(m))}}}'


def conversation_json(c: Conversation, *, queue_position: int | None = None,
                      eta_seconds: int | None = None, assignee_name: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": c.id,
        "status": c.status,
        "user_id": c.user_id,
        "bot_id": c.bot_id,
        "assignee": c.assignee_id,
        "last_seq": c.last_seq,
        "created_at": _iso(c.created_at),
        "updated_at": _iso(c.updated_at),
    }
    if c.handoff_reason:
        out["handoff_reason"] = c.handoff_reason
    if assignee_name is not None:
        out["assignee_name"] = assignee_name
    if queue_position is not None:
        out["queue_position"] = queue_position
    if eta_seconds is not None:
        out["eta_seconds"] = eta_seconds
    return out


def conversation_frame(c: Conversation, **kw: Any) -> str:
    return json.dumps({"type": "conversation.updated", "conversation": conversation_json(c, **kw)})


def _iso(dt: datetime) -> str:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return _aware(dt).isoformat().replace("+00:00", "Z")


FaultHook = Callable[[str], None]

_OUTBOX = OutboxRow.__table__  # type: ignore[attr-defined]
_INSERT_OUTBOX = sa_insert(_OUTBOX)


@dataclass(frozen=True, slots=True)
class Posted:
    message: Message
    created: bool
    changed: Conversation | None  # the conversation, when this message changed its status
    event: ConversationEvent | None = None  # announced after the message is published


class ChatService:
    def __init__(
        self,
        db: Database,
        bus: Bus,
        *,
        max_text_chars: int = 4000,
        chat_push_delay_s: float = 60.0,
        fault_hook: FaultHook | None = None,
        events: Dispatcher | None = None,
        max_attachments: int = 10,
        eta_per_position_s: int = 120,
        write_batch_max: int = 256,
        write_batch_wait_us: int = 0,
        write_batches_in_flight: int = 4,
    ) -> None:
        self.db = db
        self.max_attachments = max_attachments
        self.bus = bus
        self.max_text_chars = max_text_chars
        self.chat_push_delay_s = chat_push_delay_s
        self._fault = fault_hook or (lambda _point: None)
        # The node's one event path: conversation events and bot work, after commit.
        self.events = events or bus.events
        self.bridge = EventBridge(bus, self.events)
        # A first estimate of the wait per place in the queue, until handling times are measured.
        self.eta_per_position_s = eta_per_position_s
        # Every message of the node goes through one group-committing writer (server.chat.writer).
        self.writer = MessageWriter(db, max_batch=write_batch_max, max_wait_us=write_batch_wait_us,
                                    in_flight=write_batches_in_flight, max_attachments=max_attachments,
                                    chat_push_delay_s=chat_push_delay_s, fault_hook=self._fault)

    # ---- reads -------------------------------------------------------------------------

    async def get_conversation(self, p: Principal, conversation_id: str) -> Conversation:
        """A conversation the principal may see; anything else is ``not_found``."""
        async with self.db.session() as s:
            conv = await s.get(Conversation, conversation_id)
        if conv is None or not self.can_see(p, conv):
            raise NotFound("conversation not found")
        return conv

    @staticmethod
    def can_see(p: Principal, conv: Conversation) -> bool:
        return can_see(p, conv)

    async def list_conversations(self, p: Principal, *, status: str | None = None,
                                 limit: int = 50, label_id: str | None = None) -> list[Conversation]:
        """An agent's list is the queue and their own; ``status`` or ``label_id`` (the conversations carrying
        that label, agents and admins) asks for all of the tenant's that match instead."""
        q = select(Conversation).where(Conversation.tenant_id == p.tenant_id)
        if label_id is not None:
            q = q.where(col(Conversation.id).in_(select(ConversationLabel.conversation_id).where(
                ConversationLabel.tenant_id == p.tenant_id, ConversationLabel.label_id == label_id)))
        if p.role == "user":
            q = q.where(Conversation.user_id == p.id)
        elif p.role == "agent" and status is None and label_id is None:
            q = q.where(
                (Conversation.status == Status.QUEUED)
                | ((Conversation.assignee_id == p.id) & (Conversation.status == Status.ASSIGNED))
            )
        if status is not None:
            q = q.where(Conversation.status == status)
        q = q.order_by(col(Conversation.updated_at).desc()).limit(limit)
        async with self.db.session() as s:
            return list((await s.exec(q)).all())

    async def history(self, p: Principal, conversation_id: str, *, after_seq: int = 0,
                      limit: int = 100) -> list[Message]:
        conv = await self.get_conversation(p, conversation_id)
        if after_seq < 0 or after_seq > conv.last_seq:
            raise Conflict(f"after_seq {after_seq} is outside 0..{conv.last_seq}", code="invalid_cursor")
        q = (
            select(Message)
            .where(Message.conversation_id == conv.id, Message.tenant_id == p.tenant_id,
                   Message.seq > after_seq)
            .order_by(col(Message.seq))
            .limit(limit)
        )
        if p.role == "user":
            q = q.where(Message.kind != "note")
        async with self.db.session() as s:
            return list((await s.exec(q)).all())

    async def queue_position(self, conv: Conversation) -> int | None:
        if conv.status != Status.QUEUED or conv.queued_at is None:
            return None
        async with self.db.session() as s:
            ahead = (
                await s.exec(
                    select(func.count()).select_from(Conversation).where(
                        Conversation.tenant_id == conv.tenant_id,
                        Conversation.status == Status.QUEUED,
                        col(Conversation.queued_at) < conv.queued_at,
                    )
                )
            ).one()
        return int(ahead) + 1

    # ---- writes ------------------------------------------------------------------------

    async def start_conversation(self, p: Principal, *, bot_id: str | None = None,
                                 user_id: str | None = None) -> Conversation:
        if p.role == "user":
            owner = p.id
        elif user_id:
            owner = user_id
        else:
            raise BadInput("user_id is required when an agent or admin starts a conversation",
                           field="user_id")
        from server.core.models import Bot

        async with self.db.write() as s:
            if bot_id is not None:
                bot = await s.get(Bot, bot_id)
                if bot is None or bot.tenant_id != p.tenant_id:
                    raise NotFound("bot not found")
            else:
                bot = (await s.exec(select(Bot).where(Bot.tenant_id == p.tenant_id,
                                                      Bot.is_default == True))).first()  # noqa: E712
            await _ensure_user(s, p.tenant_id, owner, p.name if p.role == "user" else None)
            conv = Conversation(tenant_id=p.tenant_id, user_id=owner, bot_id=bot.id if bot else None,
                                status=Status.BOT if bot else Status.QUEUED)
            if conv.status == Status.QUEUED:
                conv.queued_at = utcnow()
            s.add(conv)
            await s.flush()
            s.add(Participant(conversation_id=conv.id, kind="user", participant_id=owner,
                              tenant_id=p.tenant_id))
        await self._publish_conversation(conv)
        return conv

    async def post_message(
        self,
        tenant_id: str,
        conversation_id: str,
        sender: Sender,
        text: str,
        *,
        client_msg_id: str | None = None,
        kind: str = "text",
        citations: list[dict[str, Any]] | None = None,
        draft_id: str | None = None,
        principal: Principal | None = None,
        attachments: list[str] | None = None,
        reply_to: str | None = None,
        rich: dict[str, Any] | None = None,
    ) -> Posted:
        """Store one message (one transaction). A repeated ``client_msg_id`` returns the original
        with ``created=False``. Nothing is published here: the caller acks, then ``publish``es.
        ``attachments`` are ids of files this sender uploaded into this conversation; ``reply_to``
        the id of the message of this conversation it quotes; ``rich`` its buttons, card or form."""
        attachments = list(attachments or [])
        if attachments and isinstance(text, str) and not text.strip():
            text = ""  # a file alone is a message
        else:
            text = validate_text(text, self.max_text_chars)
        if client_msg_id is not None:
            client_msg_id = validate_client_msg_id(client_msg_id)
        elif sender.kind in ("user", "agent"):
            raise BadInput("client_msg_id is required", field="client_msg_id")
        extra = await self._extra(tenant_id, conversation_id, sender, principal, kind, reply_to, rich)
        written = await self.writer.write(Draft(
            tenant_id, conversation_id, sender, text, client_msg_id=client_msg_id, kind=kind,
            citations=citations or [], draft_id=draft_id, principal=principal, attachments=attachments,
            extra=extra))
        if not written.created:
            return Posted(written.message, False, None)
        if written.bot_work:
            await self.events.publish(BotWork(tenant_id, conversation_id))
        self._fault("after_commit")
        return Posted(written.message, True, written.changed, written.event)

    async def _extra(self, tenant_id: str, conversation_id: str, sender: Sender, principal: Principal | None,
                     kind: str, reply_to: str | None, rich: dict[str, Any] | None) -> dict[str, Any]:
        """The new message's quote and rich content (server.chat.replies, server.chat.rich)."""
        extra: dict[str, Any] = {}
        if rich is not None:
            extra["rich"] = validate_rich(rich, sender.kind)
        if reply_to is not None:
            if principal is not None:
                await self.get_conversation(principal, conversation_id)
            extra["quote"] = await quote_for(self.db, tenant_id, conversation_id, reply_to, kind=kind)
            extra["reply_to_id"] = reply_to
        return extra

    async def publish(self, posted: "Posted") -> None:
        if not posted.created:
            return
        msg = posted.message
        self._fault("before_publish")
        frame = message_frame(msg)
        if msg.kind != "note":
            await self.bus.publish(topic_conversation(msg.conversation_id), frame)
            self._fault("during_fanout")
        # Agents follow the agent topic only, so they get every message (notes included) once.
        await self.bus.publish(topic_agents(msg.conversation_id), frame)
        if posted.changed is not None:
            await self._publish_conversation(posted.changed)
        if posted.event is not None:
            await self.bridge.announce(posted.event)

    async def send(self, tenant_id: str, conversation_id: str, sender: Sender, text: str,
                   **kw: Any) -> Posted:
        posted = await self.post_message(tenant_id, conversation_id, sender, text, **kw)
        await self.publish(posted)
        return posted

    async def apply(self, tenant_id: str, conversation_id: str, action: Action, actor: Actor, *,
                    principal: Principal | None = None, reason: str | None = None,
                    notice: str | None = None, target: Actor | None = None,
                    comment: str | None = None) -> Conversation:
        """Carry out one transition (``server.chat.lifecycle``) in ONE transaction: the new
        status, its system message (its seq taken inside the same transaction), its push event in
        the outbox. Then, after the commit, publish the frames and announce the event."""
        if action is Action.WRITE:
            raise BadInput("a write is a message: post it")
        async with self.db.write() as s:
            conv = (await s.exec(select(Conversation).where(Conversation.id == conversation_id)
                                 .with_for_update())).first()
            if conv is None or conv.tenant_id != tenant_id or (
                    principal is not None and not self.can_see(principal, conv)):
                raise NotFound("conversation not found")
            now = utcnow()
            change = transition(conversation_state(conv, 0), action, actor, now, reason=reason, notice=notice,
                                target=target, comment=comment)
            if not change.changed:
                return conv
            take_change(conv, change, now)
            conv.updated_at = now
            agents_note: Message | None = None
            if change.note_text:  # for the agents only (a transfer's comment), before the user's notice
                conv.last_seq += 1
                agents_note = Message(tenant_id=tenant_id, conversation_id=conv.id, seq=conv.last_seq, kind="note",
                                      sender_kind=str(actor.kind), sender_id=actor.id, sender_name=actor.name,
                                      text=validate_text(change.note_text, self.max_text_chars), created_at=now)
                s.add(agents_note)
            note: Message | None = None
            if change.system_text:
                conv.last_seq += 1
                note = Message(tenant_id=tenant_id, conversation_id=conv.id, seq=conv.last_seq, kind="system",
                               sender_kind="system", sender_id="system", sender_name="Parley",
                               text=validate_text(change.system_text, self.max_text_chars), created_at=now)
                s.add(note)
            s.add(conv)
            if change.push is not None:
                await s.flush()
                await _write_push_event(await s.connection(), conv, change, now)
            # Built inside the transaction: between the commit and the notice's frame no query
            # may run, or a message committed right after ours (seq + 1) is published first.
            frame = await self._conversation_frame_in(s, conv)
            self._fault("status_before_commit")
        self._fault("status_after_commit")
        # The new status first, then its notice (clients read "X joined" knowing the assignee).
        await self._publish_conversation_frame(conv, frame)
        if agents_note is not None:
            await self.publish(Posted(agents_note, True, None))
        if note is not None:
            await self.publish(Posted(note, True, None))
        await self.bridge.announce(conversation_event(conv, action, actor, change))
        return conv

    async def set_status(self, p: Principal | None, tenant_id: str, conversation_id: str, action: str, *,
                         reason: str | None = None, agent_id: str | None = None,
                         notice: str | None = None) -> Conversation:
        """handoff → queued, claim → assigned, resolve → resolved, handback → bot."""
        try:
            what = Action(action)
        except ValueError:
            raise BadInput(f"unknown action {action!r}") from None
        actor = Actor(ActorKind.AGENT, agent_id, p.name if p else None) if agent_id else actor_of(p)
        return await self.apply(tenant_id, conversation_id, what, actor, principal=p, reason=reason, notice=notice)

    async def mark_read(self, p: Principal, conversation_id: str, seq: int) -> int:
        conv = await self.get_conversation(p, conversation_id)
        if seq < 0 or seq > conv.last_seq:
            raise Conflict(f"seq {seq} is outside 0..{conv.last_seq}", code="invalid_cursor")
        async with self.db.write() as s:
            part = await s.get(Participant, (conv.id, p.sender_kind, p.id))
            if part is None:
                part = Participant(conversation_id=conv.id, kind=p.sender_kind, participant_id=p.id,
                                   tenant_id=p.tenant_id)
            part.read_seq = max(part.read_seq, seq)
            s.add(part)
            return part.read_seq

    async def _publish_conversation(self, conv: Conversation) -> None:
        await self.publish_conversation(conv)

    async def publish_conversation(self, conv: Conversation, *, queue_position: int | None = None) -> None:
        pos = queue_position
        if pos is None and conv.status == Status.QUEUED:
            pos = await self.queue_position(conv)
        eta = pos * self.eta_per_position_s if pos else None
        extra: dict[str, Any] = {}
        if conv.assignee_id:
            agent = await self.agent(conv.tenant_id, conv.assignee_id)
            extra["assignee_name"] = agent.name if agent else None
        await self._publish_conversation_frame(conv, conversation_frame(conv, queue_position=pos, eta_seconds=eta,
                                                                        **extra))

    async def _conversation_frame_in(self, s: Any, conv: Conversation) -> str:
        """``publish_conversation``'s frame, read inside the caller's transaction."""
        pos: int | None = None
        if conv.status == Status.QUEUED and conv.queued_at is not None:
            ahead = (await s.exec(select(func.count()).select_from(Conversation).where(
                Conversation.tenant_id == conv.tenant_id, Conversation.status == Status.QUEUED,
                col(Conversation.queued_at) < conv.queued_at))).one()
            pos = int(ahead) + 1
        extra: dict[str, Any] = {}
        if conv.assignee_id:
            agent = await s.get(Agent, conv.assignee_id)
            extra["assignee_name"] = agent.name if agent is not None and agent.tenant_id == conv.tenant_id else None
        eta = pos * self.eta_per_position_s if pos else None
        return conversation_frame(conv, queue_position=pos, eta_seconds=eta, **extra)

    async def _publish_conversation_frame(self, conv: Conversation, frame: str) -> None:
        # The user's own topic reaches every device of the user; the queue topic every agent.
        # (The conversation topic would give the user a second copy.)
        await self.bus.publish(topic_queue(conv.tenant_id), frame)
        await self.bus.publish(topic_user(conv.tenant_id, "user", conv.user_id), frame)

    async def agent(self, tenant_id: str, agent_id: str) -> Agent | None:
        async with self.db.session() as s:
            a = await s.get(Agent, agent_id)
        return a if a is not None and a.tenant_id == tenant_id else None


async def _write_push_event(conn: Any, conv: Conversation, change: Change, now: datetime) -> None:
    row = push_event_row(conv, change, now)
    if row is not None:
        await conn.execute(_INSERT_OUTBOX, row)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


async def _ensure_user(s: Any, tenant_id: str, external_id: str, name: str | None) -> None:
    existing = (await s.exec(select(User).where(User.tenant_id == tenant_id,
                                                User.external_id == external_id))).first()
    if existing is None:
        s.add(User(tenant_id=tenant_id, external_id=external_id, name=name))


iso = _iso
