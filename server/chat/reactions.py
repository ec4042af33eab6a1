"""Emoji reactions: one per participant per emoji on a message, the emoji one of a bounded
allow-list (``reaction_emojis``). Each change reaches every side as a ``message.reaction`` frame
with the emoji's new count; the history carries the counts."""

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from server.accounts.auth import Principal
from server.chat.edits import find_message, publish_change
from server.chat.models import MessageReaction
from server.chat.service import ChatService
from server.errors import BadInput, Conflict, Forbidden

__all__ = ["Reactions"]


class Reactions:
    def __init__(self, chat: ChatService, *, allowed: Iterable[str]) -> None:
        self.chat = chat
        self.allowed = tuple(dict.fromkeys(allowed))

    def check(self, emoji: object) -> str:
        """The emoji, if it is one of the allowed ones (the error never echoes what was sent)."""
        if not isinstance(emoji, str) or emoji not in self.allowed:
            raise BadInput(f"emoji must be one of {' '.join(self.allowed)}", field="emoji")
        return emoji

    async def set(self, p: Principal, conversation_id: str, message_id: str, emoji: object,
                  active: bool) -> dict[str, Any]:
        """Add (``active``) or remove the caller's ``emoji`` on a message; idempotent. Answers the
        ``message.reaction`` frame, published to every side when something changed."""
        emoji = self.check(emoji)
        conv = await self.chat.get_conversation(p, conversation_id)
        if p.role == "admin":
            raise Forbidden("an admin does not react to messages")
        key = (message_id, p.sender_kind, p.id, emoji)
        try:
            async with self.chat.db.write() as s:
                m = await find_message(s, p, conv.id, message_id)
                if m.deleted_at is not None:
                    raise Conflict("this message was deleted", code="message_deleted")
                mine = await s.get(MessageReaction, key)
                changed = (mine is None) == active
                if active and mine is None:
                    s.add(MessageReaction(message_id=m.id, reactor_kind=p.sender_kind, reactor_id=p.id, emoji=emoji,
                                          tenant_id=m.tenant_id, conversation_id=m.conversation_id))
                elif not active and mine is not None:
                    await s.delete(mine)
        except IntegrityError:
            changed = False  # the same reaction added at once from another tab: it is there
        async with self.chat.db.session() as s:
            count = int((await s.exec(select(func.count()).select_from(MessageReaction).where(
                MessageReaction.message_id == m.id, MessageReaction.emoji == emoji))).one())
        frame = {"type": "message.reaction", "conversation_id": m.conversation_id, "message_id": m.id,
                 "seq": m.seq, "emoji": emoji, "count": count, "active": active,
                 "participant": {"kind": p.sender_kind, "id": p.id, "name": p.name}}
        if changed:
            await publish_change(self.chat, m, frame)
        return frame

    async def summaries(self, p: Principal, message_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The reactions on each of these messages (of the caller's tenant): emoji, count, and
        whether the caller is one of those who reacted, in the allow-list's order."""
        if not message_ids:
            return {}
        async with self.chat.db.session() as s:
            rows = (await s.exec(select(MessageReaction).where(
                MessageReaction.tenant_id == p.tenant_id, col(MessageReaction.message_id).in_(message_ids)))).all()
        order = {e: i for i, e in enumerate(self.allowed)}
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for r in sorted(rows, key=lambda r: (order.get(r.emoji, len(order)), r.created_at)):
            entry = out.setdefault(r.message_id, {}).setdefault(r.emoji, {"emoji": r.emoji, "count": 0, "mine": False})
            entry["count"] += 1
            entry["mine"] = entry["mine"] or (r.reactor_kind == p.sender_kind and r.reactor_id == p.id)
        return {mid: list(by.values()) for mid, by in out.items()}

