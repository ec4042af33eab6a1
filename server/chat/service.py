"""The chat service: the only write path for messages and conversation state. Each write is
one transaction (seq from the conversation's counter row, the message, the idempotency key,
the outbox rows); events are published on the bus only after the commit."""

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func
from sqlalchemy import insert as sa_insert
from sqlalchemy import select as sa_select
from sqlalchemy import update as sa_update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from server.accounts.auth import Principal
from server.attachments.service import claim_for_message, load_for_message
from server.core.db import Database
from server.core.models import Agent, Conversation, Message, OutboxRow, Participant, Tenant, User, utcnow
from server.errors import BadInput, Conflict, Forbidden, NotFound, TooLong
from server.fanout import Bus

__all__ = [
    "MESSAGE_PREFIX",
    "ChatService",
    "Posted",
    "Sender",
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


def topic_conversation(conversation_id: str) -> str:
    return f"c:{conversation_id}"


def topic_agents(conversation_id: str) -> str:
    """Agent-only events of a conversation (notes, handoff summaries)."""
    return f"a:{conversation_id}"


def topic_queue(tenant_id: str) -> str:
    return f"q:{tenant_id}"


def topic_user(tenant_id: str, role: str, principal_id: str) -> str:
    return f"u:{tenant_id}:{role}:{principal_id}"


@dataclass(frozen=True, slots=True)
class Sender:
    kind: str  # user | agent | bot | system
    id: str
    name: str | None = None

    @classmethod
    def of(cls, p: Principal) -> "Sender":
        return cls(kind=p.sender_kind, id=p.id, name=p.name)


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
    if m.attachments:
        out["attachments"] = m.attachments
    return out


MESSAGE_PREFIX = '{"type": "message", "seq": '


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

_CONV = Conversation.__table__  # type: ignore[attr-defined]
_MSG = Message.__table__  # type: ignore[attr-defined]
_OUTBOX = OutboxRow.__table__  # type: ignore[attr-defined]
_PART = Participant.__table__  # type: ignore[attr-defined]
_SELECT_CONV = sa_select(_CONV).where(_CONV.c.id == bindparam("cid"))
_NEXT_SEQ = (
    sa_update(_CONV).where(_CONV.c.id == bindparam("cid"))
    .values(last_seq=_CONV.c.last_seq + 1, updated_at=bindparam("now")).returning(_CONV.c.last_seq)
)
_UPDATE_STATUS = sa_update(_CONV).where(_CONV.c.id == bindparam("cid")).values(
    status=bindparam("new_status"), assignee_id=bindparam("new_assignee"), last_agent_id=bindparam("new_last_agent"),
    resolved_at=bindparam("new_resolved_at"))
_MESSAGE_COLUMNS = tuple(c.name for c in _MSG.columns)
_INSERT_MESSAGE = sa_insert(_MSG)
_INSERT_OUTBOX = sa_insert(_OUTBOX)
_MARK_READ = (
    sa_update(_PART)
    .where(_PART.c.conversation_id == bindparam("cid"), _PART.c.kind == bindparam("pkind"),
           _PART.c.participant_id == bindparam("pid"), _PART.c.read_seq < bindparam("new_seq"))
    .values(read_seq=bindparam("new_seq"))
)


@dataclass(frozen=True, slots=True)
class Posted:
    message: Message
    created: bool
    changed: Conversation | None  # the conversation, when this message changed its status


class ChatService:
    def __init__(
        self,
        db: Database,
        bus: Bus,
        *,
        max_text_chars: int = 4000,
        chat_push_delay_s: float = 60.0,
        fault_hook: FaultHook | None = None,
        max_attachments: int = 10,
    ) -> None:
        self.db = db
        self.max_attachments = max_attachments
        self.bus = bus
        self.max_text_chars = max_text_chars
        self.chat_push_delay_s = chat_push_delay_s
        self._fault = fault_hook or (lambda _point: None)
        self.listeners: list[Callable[[str, Conversation], Any]] = []
        # Called after a commit that left work for the AI agent (a user message in a bot conversation).
        self.on_bot_work: list[Callable[[], None]] = []
        # A first estimate of the wait per place in the queue, until handling times are measured.
        self.eta_per_position_s = 120

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
        if conv.tenant_id != p.tenant_id:
            return False
        if p.role == "user":
            return conv.user_id == p.id
        return True

    @staticmethod
    def may_write(p: Principal, conv: Conversation) -> bool:
        """The owner rule that claim, resolve and handback follow, for writing: an agent writes
        into a conversation assigned to them (or last theirs, once resolved), or takes an
        unowned one (bot or queued) by writing; never into another agent's."""
        if p.role != "agent":
            return True
        if conv.status == "assigned":
            return conv.assignee_id == p.id
        if conv.status == "resolved":
            return conv.last_agent_id in (None, p.id)
        return True

    async def list_conversations(self, p: Principal, *, status: str | None = None,
                                 limit: int = 50) -> list[Conversation]:
        q = select(Conversation).where(Conversation.tenant_id == p.tenant_id)
        if p.role == "user":
            q = q.where(Conversation.user_id == p.id)
        elif p.role == "agent" and status is None:
            q = q.where(
                (Conversation.status == "queued")
                | ((Conversation.assignee_id == p.id) & (Conversation.status == "assigned"))
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
        if conv.status != "queued" or conv.queued_at is None:
            return None
        async with self.db.session() as s:
            ahead = (
                await s.exec(
                    select(func.count()).select_from(Conversation).where(
                        Conversation.tenant_id == conv.tenant_id,
                        Conversation.status == "queued",
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
                                status="bot" if bot else "queued")
            if conv.status == "queued":
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
    ) -> Posted:
        """Store one message (one transaction). A repeated ``client_msg_id`` returns the original
        with ``created=False``. Nothing is published here: the caller acks, then ``publish``es.
        ``attachments`` are ids of files this sender uploaded into this conversation."""
        attachments = list(attachments or [])
        if attachments and isinstance(text, str) and not text.strip():
            text = ""  # a file alone is a message
        else:
            text = validate_text(text, self.max_text_chars)
        if client_msg_id is not None:
            client_msg_id = validate_client_msg_id(client_msg_id)
        elif sender.kind in ("user", "agent"):
            raise BadInput("client_msg_id is required", field="client_msg_id")
        try:
            msg, changed, created = await self._insert(tenant_id, conversation_id, sender, text, client_msg_id,
                                                       kind, citations or [], draft_id, principal, attachments)
        except IntegrityError:
            # A concurrent retry with the same key won the race; answer with its row.
            existing = await self._find_existing(tenant_id, conversation_id, sender, client_msg_id)
            if existing is None:
                raise
            if existing.text != text:
                raise Conflict("client_msg_id was already used with a different text") from None
            if [a["id"] for a in existing.attachments or []] != attachments:
                raise Conflict("client_msg_id was already used with different attachments") from None
            return Posted(existing, False, None)
        if created:
            self._fault("after_commit")
        return Posted(msg, created, changed)

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
            for listener in self.listeners:
                await listener("message_status", posted.changed)

    async def send(self, tenant_id: str, conversation_id: str, sender: Sender, text: str,
                   **kw: Any) -> Posted:
        posted = await self.post_message(tenant_id, conversation_id, sender, text, **kw)
        await self.publish(posted)
        return posted

    async def _find_existing(self, tenant_id: str, conversation_id: str, sender: Sender,
                             client_msg_id: str | None) -> Message | None:
        if client_msg_id is None:
            return None
        async with self.db.session() as s:
            return (
                await s.exec(
                    select(Message).where(
                        Message.tenant_id == tenant_id,
                        Message.conversation_id == conversation_id,
                        Message.sender_kind == sender.kind,
                        Message.sender_id == sender.id,
                        Message.client_msg_id == client_msg_id,
                    )
                )
            ).first()

    async def _insert(self, tenant_id: str, conversation_id: str, sender: Sender, text: str,
                      client_msg_id: str | None, kind: str, citations: list[dict[str, Any]],
                      draft_id: str | None, principal: Principal | None, attachments: list[str]
                      ) -> tuple[Message, Conversation | None, bool]:
        # The hot path runs SQLAlchemy Core statements built once (compiled once, cached): the ORM
        # unit of work cost several milliseconds per message.
        changed: Conversation | None = None
        bot_work = False
        async with self.db.write() as s:
            conn = await s.connection()
            row = (await conn.execute(_SELECT_CONV, {"cid": conversation_id})).first()
            conv = Conversation(**row._mapping) if row is not None else None
            if conv is None or conv.tenant_id != tenant_id or (
                principal is not None and not self.can_see(principal, conv)
            ):
                raise NotFound("conversation not found")
            if principal is not None and not self.may_write(principal, conv):
                raise Forbidden("this conversation is another agent's; claim it or ask them to hand it over")
            if sender.kind == "bot" and conv.status != "bot" and kind == "text":
                raise Forbidden("the AI agent does not post while a human owns the conversation")
            now = utcnow()
            if sender.kind == "user" and conv.status == "resolved":
                changed = await self._reopen(s, conv, now)
            if sender.kind == "agent" and kind == "text" and conv.status in ("queued", "bot"):
                # An agent who writes takes the conversation, as in every help desk.
                conv.status, conv.assignee_id, conv.last_agent_id = "assigned", sender.id, sender.id
                changed = conv
            if changed is not None:
                await conn.execute(_UPDATE_STATUS, {
                    "cid": conv.id, "new_status": conv.status, "new_assignee": conv.assignee_id,
                    "new_last_agent": conv.last_agent_id, "new_resolved_at": conv.resolved_at})
            files = await load_for_message(conn, tenant_id=tenant_id, conversation_id=conversation_id,
                                           sender_kind=sender.kind, sender_id=sender.id, ids=attachments,
                                           max_per_message=self.max_attachments) if attachments else None
            seq = int((await conn.execute(_NEXT_SEQ, {"cid": conversation_id, "now": now})).scalar_one())
            conv.last_seq = seq
            msg = Message(
                tenant_id=tenant_id, conversation_id=conversation_id, seq=seq, kind=kind,
                sender_kind=sender.kind, sender_id=sender.id, sender_name=sender.name, text=text,
                citations=citations, client_msg_id=client_msg_id, draft_id=draft_id, created_at=now,
                attachments=files,
            )
            # No duplicate lookup first: the unique key on client_msg_id refuses a repeat here, and
            # post_message answers it with the original row (the rollback undoes the seq).
            await conn.execute(_INSERT_MESSAGE, {c: getattr(msg, c) for c in _MESSAGE_COLUMNS})
            if attachments:
                await claim_for_message(conn, msg.id, attachments)
            if sender.kind in ("user", "agent"):
                await _mark_sender_read(s, conv, sender, seq)
            if sender.kind == "user" and conv.status == "bot" and kind == "text":
                bot_work = True
                await conn.execute(_INSERT_OUTBOX, {
                    "tenant_id": tenant_id, "topic": "bot", "available_at": now, "created_at": now,
                    "payload": {"conversation_id": conversation_id, "message_id": msg.id, "seq": seq}})
            if sender.kind in ("agent", "bot") and kind == "text":
                tenant = await s.get(Tenant, tenant_id)
                await conn.execute(_INSERT_OUTBOX, {
                    "tenant_id": tenant_id, "topic": "push", "created_at": now,
                    "available_at": now + timedelta(seconds=self.chat_push_delay_s),
                    "payload": {"kind": "chat.reply", "conversation_id": conversation_id, "message_id": msg.id,
                                "user_id": conv.user_id, "sender_name": sender.name or "",
                                "tenant_name": tenant.name if tenant else "",
                                "text": (text or " ".join("📎 " + f["name"] for f in files or []))[:200],
                                "seq": seq}})
            self._fault("before_commit")
        if bot_work:
            for wake in self.on_bot_work:
                wake()
        return msg, changed, True

    async def _reopen(self, s: Any, conv: Conversation, now: datetime) -> Conversation:
        tenant = await s.get(Tenant, conv.tenant_id)
        cooldown = tenant.reopen_cooldown_s if tenant else 0
        if conv.last_agent_id and conv.resolved_at and now - _aware(conv.resolved_at) < timedelta(seconds=cooldown):
            conv.status, conv.assignee_id = "assigned", conv.last_agent_id
        else:
            conv.status, conv.assignee_id = "bot", None
        conv.resolved_at = None
        return conv

    async def set_status(self, p: Principal | None, tenant_id: str, conversation_id: str, action: str, *,
                         reason: str | None = None, agent_id: str | None = None) -> Conversation:
        """handoff → queued, claim → assigned, resolve → resolved, handback → bot."""
        async with self.db.write() as s:
            conv = await s.get(Conversation, conversation_id)
            if conv is None or conv.tenant_id != tenant_id or (p is not None and not self.can_see(p, conv)):
                raise NotFound("conversation not found")
            now = utcnow()
            if action == "handoff":
                if conv.status in ("queued", "assigned"):
                    return conv  # one handoff per decision: repeating it changes nothing
                conv.status, conv.assignee_id, conv.queued_at = "queued", None, now
                conv.handoff_reason = (reason or "requested")[:64]
            elif action == "claim":
                if conv.status == "assigned" and conv.assignee_id == agent_id:
                    return conv
                if conv.status == "assigned":
                    raise Conflict("conversation is already assigned", code="forbidden")
                conv.status, conv.assignee_id, conv.last_agent_id = "assigned", agent_id, agent_id
            elif action == "resolve":
                if conv.status == "resolved":
                    return conv
                conv.status, conv.resolved_at = "resolved", now
            elif action == "handback":
                if conv.status == "bot":
                    return conv
                conv.status, conv.assignee_id, conv.handoff_reason = "bot", None, None
                conv.bot_offered_human = False
            else:
                raise BadInput(f"unknown action {action!r}")
            conv.updated_at = now
            s.add(conv)
        await self._publish_conversation(conv)
        for listener in self.listeners:
            await listener(action, conv)
        return conv

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
        if pos is None and conv.status == "queued":
            pos = await self.queue_position(conv)
        eta = pos * self.eta_per_position_s if pos else None
        extra: dict[str, Any] = {}
        if conv.assignee_id:
            agent = await self.agent(conv.tenant_id, conv.assignee_id)
            extra["assignee_name"] = agent.name if agent else None
        frame = conversation_frame(conv, queue_position=pos, eta_seconds=eta, **extra)
        # The user's own topic reaches every device of the user; the queue topic every agent.
        # (The conversation topic would give the user a second copy.)
        await self.bus.publish(topic_queue(conv.tenant_id), frame)
        await self.bus.publish(topic_user(conv.tenant_id, "user", conv.user_id), frame)

    async def agent(self, tenant_id: str, agent_id: str) -> Agent | None:
        async with self.db.session() as s:
            a = await s.get(Agent, agent_id)
        return a if a is not None and a.tenant_id == tenant_id else None


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


async def _ensure_user(s: Any, tenant_id: str, external_id: str, name: str | None) -> None:
    existing = (await s.exec(select(User).where(User.tenant_id == tenant_id,
                                                User.external_id == external_id))).first()
    if existing is None:
        s.add(User(tenant_id=tenant_id, external_id=external_id, name=name))


async def _mark_sender_read(s: Any, conv: Conversation, sender: Sender, seq: int) -> None:
    """The sender has read everything up to its own message: one UPDATE on the hot path."""
    conn = await s.connection()
    result = await conn.execute(_MARK_READ, {"cid": conv.id, "pkind": sender.kind, "pid": sender.id, "new_seq": seq})
    if result.rowcount == 0 and await s.get(Participant, (conv.id, sender.kind, sender.id)) is None:
        s.add(Participant(conversation_id=conv.id, kind=sender.kind, participant_id=sender.id,
                          tenant_id=conv.tenant_id, read_seq=seq))


iso = _iso
