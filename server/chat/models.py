"""The tables of the messages people expect in chat: every earlier text of an edited or deleted
message (the audit), and the emoji reactions on messages."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text
from sqlmodel import Field, SQLModel

from server.core.models import new_id, utcnow

__all__ = ["MessageReaction", "MessageRevision"]


def _ts() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class MessageRevision(SQLModel, table=True):
    """What a message said before one edit or its deletion, and who changed it when."""

    __tablename__ = "message_revisions"
    __table_args__ = (Index("ix_message_revisions_message", "message_id", "created_at"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=32)
    conversation_id: str = Field(foreign_key="conversations.id", max_length=32)
    message_id: str = Field(foreign_key="messages.id", max_length=32)
    action: str = Field(max_length=8)  # RevisionAction: edit or delete
    text: str = Field(sa_column=Column(Text, nullable=False))  # the text before the change
    attachments: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    actor_kind: str = Field(max_length=8)
    actor_id: str = Field(max_length=200)
    created_at: datetime = _ts()


class MessageReaction(SQLModel, table=True):
    """One participant's emoji on one message: at most one row per (message, participant, emoji)."""

    __tablename__ = "message_reactions"
    __table_args__ = (Index("ix_message_reactions_conversation", "conversation_id"),)
    message_id: str = Field(foreign_key="messages.id", primary_key=True, max_length=32)
    reactor_kind: str = Field(primary_key=True, max_length=8)
    reactor_id: str = Field(primary_key=True, max_length=200)
    emoji: str = Field(primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=32)
    conversation_id: str = Field(foreign_key="conversations.id", max_length=32)
    created_at: datetime = _ts()
