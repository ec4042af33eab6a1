"""The attachment row: what a stored object is, whose conversation it belongs to, and the message
that carries it (none until it is sent)."""

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Index
from sqlmodel import Field, SQLModel

from server.core.models import utcnow

__all__ = ["Attachment", "attachment_id"]


def attachment_id() -> str:
    # 128 random bits: the id is the only name of the file, so it must not be guessable.
    return secrets.token_hex(16)


def _ts() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class Attachment(SQLModel, table=True):
    __tablename__ = "attachments"
    __table_args__ = (Index("ix_attachments_tenant", "tenant_id"),
                      Index("ix_attachments_conversation", "conversation_id"),
                      Index("ix_attachments_message", "message_id"))
    id: str = Field(default_factory=attachment_id, primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=32)
    conversation_id: str = Field(foreign_key="conversations.id", max_length=32)
    uploader_kind: str = Field(max_length=8)
    uploader_id: str = Field(max_length=200)
    name: str = Field(max_length=255)
    media_type: str = Field(max_length=100)
    size: int
    storage_key: str = Field(max_length=200)
    width: int | None = None
    height: int | None = None
    thumbnail_key: str | None = Field(default=None, max_length=200)
    thumbnail_type: str | None = Field(default=None, max_length=100)
    thumbnail_size: int = 0
    message_id: str | None = Field(default=None, max_length=32)
    created_at: datetime = _ts()

    def summary(self) -> dict[str, Any]:
        """What a message carries about each of its files (stored with the message, sent in frames)."""
        out: dict[str, Any] = {"id": self.id, "name": self.name, "media_type": self.media_type, "size": self.size,
                               "url": f"/v1/attachments/{self.id}"}
        if self.thumbnail_key:
            out["thumbnail_url"] = f"/v1/attachments/{self.id}/thumbnail"
            out["width"], out["height"] = self.width, self.height
        return out
