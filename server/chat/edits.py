"""Edit and delete-for-everyone: a sender changes their own message within
``message_edit_window_s`` of sending it. The earlier text is kept in ``message_revisions`` (the
audit), replies quoting the message are kept current, and after the commit every side gets a
``message.edited`` or ``message.deleted`` frame (agents only, for a note)."""

import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlmodel import col, select

from server.accounts.auth import Principal
from server.chat.models import MessageRevision
from server.chat.replies import refresh_quotes
from server.chat.service import ChatService, iso, message_json, validate_text
from server.core.models import Message, utcnow
from server.core.wire import topic_agents, topic_conversation
from server.errors import Conflict, Forbidden, NotFound

__all__ = ["MessageEdits", "RevisionAction", "find_message", "publish_change"]


class RevisionAction(StrEnum):
    EDIT = "edit"
    DELETE = "delete"


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


async def find_message(s: Any, p: Principal, conversation_id: str, message_id: str, *,
                       for_update: bool = False) -> Message:
    """A message of a conversation the caller may see (the caller checked the conversation); a
    note is invisible to end users; anything else is ``not_found``."""
    q = select(Message).where(Message.id == message_id)
    if for_update:
        q = q.with_for_update()
    m: Message | None = (await s.exec(q)).first() if isinstance(message_id, str) else None
    if (m is None or m.tenant_id != p.tenant_id or m.conversation_id != conversation_id
            or (m.kind == "note" and p.role == "user")):
        raise NotFound("message not found")
    return m


async def publish_change(chat: ChatService, m: Message, frame: dict[str, Any]) -> None:
    """A change to a message, after its commit: to whoever sees the message."""
    data = json.dumps(frame)
    if m.kind != "note":
        await chat.bus.publish(topic_conversation(m.conversation_id), data)
    await chat.bus.publish(topic_agents(m.conversation_id), data)


class MessageEdits:
    def __init__(self, chat: ChatService, *, window_s: int) -> None:
        self.chat = chat
        self.window_s = window_s

    async def edit(self, p: Principal, conversation_id: str, message_id: str, text: str) -> Message:
        """The message with its new text; an unchanged text changes nothing."""
        text = validate_text(text, self.chat.max_text_chars)
        m, changed = await self._change(p, conversation_id, message_id, RevisionAction.EDIT, text)
        if changed:
            await publish_change(self.chat, m, {"type": "message.edited", "conversation_id": m.conversation_id,
                                                "message": message_json(m)})
        return m

    async def delete(self, p: Principal, conversation_id: str, message_id: str) -> Message:
        m, _ = await self._change(p, conversation_id, message_id, RevisionAction.DELETE, "")
        assert m.deleted_at is not None
        await publish_change(self.chat, m, {"type": "message.deleted", "conversation_id": m.conversation_id,
                                            "message_id": m.id, "seq": m.seq, "deleted_at": iso(m.deleted_at)})
        return m

    async def revisions(self, p: Principal, conversation_id: str, message_id: str) -> list[MessageRevision]:
        """The audit of one message, oldest first (agents and admins)."""
        if p.role == "user":
            raise Forbidden("the audit of a message is for agents and admins")
        conv = await self.chat.get_conversation(p, conversation_id)
        async with self.chat.db.session() as s:
            m = await find_message(s, p, conv.id, message_id)
            return list((await s.exec(select(MessageRevision).where(
                MessageRevision.message_id == m.id, MessageRevision.tenant_id == p.tenant_id)
                .order_by(col(MessageRevision.created_at)))).all())

    async def _change(self, p: Principal, conversation_id: str, message_id: str, action: RevisionAction,
                      text: str) -> tuple[Message, bool]:
        conv = await self.chat.get_conversation(p, conversation_id)
        if p.role == "admin":
            raise Forbidden("an admin has no messages to edit or delete")
        async with self.chat.db.write() as s:
            m = await find_message(s, p, conv.id, message_id, for_update=True)
            if m.sender_kind != p.sender_kind or m.sender_id != p.id:
                raise Forbidden("only its sender may edit or delete a message")
            if m.deleted_at is not None:
                raise Conflict("this message was deleted", code="message_deleted")
            now = utcnow()
            if now - _aware(m.created_at) > timedelta(seconds=self.window_s):
                raise Conflict(f"a message can be edited or deleted for {self.window_s} s after it was sent",
                               code="edit_window_closed")
            if action is RevisionAction.EDIT and text == m.text:
                return m, False
            s.add(MessageRevision(tenant_id=m.tenant_id, conversation_id=m.conversation_id, message_id=m.id,
                                  action=action, text=m.text,
                                  attachments=m.attachments if action is RevisionAction.DELETE else None,
                                  actor_kind=p.sender_kind, actor_id=p.id, created_at=now))
            if action is RevisionAction.EDIT:
                m.text, m.edited_at = text, now
            else:
                # Nothing of what it said is served again; the audit row holds it.
                m.text, m.deleted_at, m.attachments, m.rich = "", now, None, None
            s.add(m)
            await s.flush()
            await refresh_quotes(await s.connection(), m)
        return m, True
