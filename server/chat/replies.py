"""Quoted replies: a message may answer one earlier message of the same conversation. The reply
stores a small copy of what it quotes (``Message.quote``), which edits and deletes keep current."""

from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import update as sa_update

from server.core.db import Database
from server.core.models import Message
from server.errors import NotFound

__all__ = ["QUOTE_CHARS", "quote_for", "quote_of", "refresh_quotes"]

#: How much of the quoted text a reply carries (the full text is one click away in the thread).
QUOTE_CHARS = 200

_MSG = Message.__table__  # type: ignore[attr-defined]
_REFRESH = (sa_update(_MSG).where(_MSG.c.conversation_id == bindparam("cid"), _MSG.c.reply_to_id == bindparam("mid"))
            .values(quote=bindparam("quote")))


def quote_of(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"id": m.id, "seq": m.seq,
                           "sender": {"kind": m.sender_kind, "id": m.sender_id, "name": m.sender_name},
                           "text": m.text[:QUOTE_CHARS]}
    if m.deleted_at is not None:
        out["deleted"] = True
    return out


async def quote_for(db: Database, tenant_id: str, conversation_id: str, reply_to: str, *, kind: str) -> dict[str, Any]:
    """The quote of ``reply_to`` for a new message of ``kind`` in ``conversation_id``. A message of
    another conversation (or tenant), or a note quoted where end users would read it, is
    ``not_found``. A deleted one may be quoted (the quote says so): a retried send whose quoted
    message was deleted meanwhile still gets its original ack. The caller has checked the conversation."""
    async with db.session() as s:
        target = await s.get(Message, reply_to) if isinstance(reply_to, str) else None
    if (target is None or target.tenant_id != tenant_id or target.conversation_id != conversation_id
            or (target.kind == "note" and kind != "note")):
        raise NotFound("the message replied to is not in this conversation", field="reply_to")
    return quote_of(target)


async def refresh_quotes(conn: Any, m: Message) -> None:
    """After ``m`` was edited or deleted (in the caller's transaction): the replies quoting it show
    its current text, or that it was deleted."""
    await conn.execute(_REFRESH, {"cid": m.conversation_id, "mid": m.id, "quote": quote_of(m)})
