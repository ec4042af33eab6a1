"""Read receipts ("seen"): how far each participant of a conversation has read, as stored by
the ``read`` frame (``ChatService.mark_read``), for a client that opens the conversation later."""

from typing import Any

from sqlmodel import select

from server.accounts.auth import Principal
from server.chat.service import ChatService
from server.core.models import Participant

__all__ = ["read_marks"]


async def read_marks(chat: ChatService, p: Principal, conversation_id: str) -> list[dict[str, Any]]:
    conv = await chat.get_conversation(p, conversation_id)
    async with chat.db.session() as s:
        parts = (await s.exec(select(Participant).where(Participant.conversation_id == conv.id,
                                                        Participant.tenant_id == conv.tenant_id))).all()
    return [{"participant": {"kind": x.kind, "id": x.participant_id}, "seq": x.read_seq}
            for x in sorted(parts, key=lambda x: (x.kind, x.participant_id))]
