"""The relational schema (SQLModel). Every row that belongs to a business carries ``tenant_id``
and every query filters on it."""

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text, UniqueConstraint
from sqlalchemy import false as sa_false
from sqlalchemy import true as sa_true
from sqlmodel import Field, SQLModel

from server.core.secretbox import Sealed

__all__ = [
    "Agent",
    "Bot",
    "Conversation",
    "Document",
    "HandoffLog",
    "KnowledgeBase",
    "Message",
    "OutboxRow",
    "Participant",
    "Status",
    "Tenant",
    "User",
    "new_id",
    "utcnow",
]


class Status(StrEnum):
    """A conversation's status, stored as these strings. Who moves it where is decided by
    ``server.chat.lifecycle.transition``."""

    BOT = "bot"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    RESOLVED = "resolved"
    SNOOZED = "snoozed"  # its agent put it aside until a time (or until the user writes)


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(**kw: Any) -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False, **kw))


def _ts_opt() -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class Tenant(SQLModel, table=True):
    __tablename__ = "tenants"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    admin_key_hash: str = Field(max_length=64, unique=True, index=True)
    signing_secret: str = Field(sa_column=Column(Sealed, nullable=False))
    widget_key: str = Field(max_length=64, unique=True, index=True)
    allowed_origins: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    reopen_cooldown_s: int = 600
    # Every token carries ``kv``; raising it (POST /v1/tenant/tokens/revoke) voids all tokens issued.
    key_version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    # None: the server's settings (user_token_max_ttl_s, agent_token_max_ttl_s)
    user_token_max_ttl_s: int | None = None
    agent_token_max_ttl_s: int | None = None
    # Identity verification for the widget (server.accounts.identity): the secret the business's backend
    # signs user ids with (None until an admin first reads it), and whether an unsigned id is refused
    identity_secret: str | None = Field(default=None, sa_column=Column(Sealed, nullable=True))
    identity_verification_required: bool = Field(default=True, sa_column_kwargs={"server_default": sa_true()})
    # Agents must sign in with a second factor (server.accounts.mfa)
    mfa_required: bool = Field(default=False, sa_column_kwargs={"server_default": sa_false()})
    # The widget's rating question and its thanks (None: the server's csat_question / csat_thanks)
    csat_question: str | None = Field(default=None, max_length=300)
    csat_thanks: str | None = Field(default=None, max_length=300)
    created_at: datetime = _ts()


class User(SQLModel, table=True):
    """An end user, known by the business's own id (``external_id``, the JWT ``sub``)."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "external_id"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=32)
    external_id: str = Field(max_length=200)
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    locale: str | None = Field(default=None, max_length=35)
    timezone: str | None = Field(default=None, max_length=64)
    anonymous: bool = False
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class Agent(SQLModel, table=True):
    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=32)
    email: str = Field(max_length=320)
    name: str = Field(max_length=200)
    password_hash: str = Field(max_length=200)
    max_concurrent: int = 5
    active: bool = Field(default=True, sa_column_kwargs={"server_default": sa_true()})
    # Tokens carry ``akv``; a password reset or deactivation raises it and voids the agent's tokens.
    token_version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    # Two-factor sign-in (server.accounts.mfa): the TOTP secret (sealed; set while enrolling, in use
    # once enabled), the last time step used (a code never works twice), recovery codes' SHA-256
    totp_secret: str | None = Field(default=None, sa_column=Column(Sealed, nullable=True))
    totp_enabled: bool = Field(default=False, sa_column_kwargs={"server_default": sa_false()})
    totp_last_step: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    recovery_codes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False,
                                                                               server_default="[]"))
    created_at: datetime = _ts()


class KnowledgeBase(SQLModel, table=True):
    __tablename__ = "knowledge_bases"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=32)
    name: str = Field(max_length=200)
    created_at: datetime = _ts()


class Document(SQLModel, table=True):
    __tablename__ = "documents"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=32)
    knowledge_base_id: str = Field(foreign_key="knowledge_bases.id", index=True, max_length=32)
    title: str = Field(max_length=500)
    source: str = Field(max_length=2000)
    status: str = Field(default="queued", max_length=16)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    progress: float = 0.0
    chunk_count: int = 0
    content_hash: str | None = Field(default=None, max_length=64)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class Bot(SQLModel, table=True):
    __tablename__ = "bots"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=32)
    name: str = Field(max_length=200)
    knowledge_base_id: str | None = Field(default=None, max_length=32)
    persona: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    handoff: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    is_default: bool = False
    created_at: datetime = _ts()


class Conversation(SQLModel, table=True):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_tenant_status", "tenant_id", "status"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=32)
    user_id: str = Field(index=True, max_length=200)
    bot_id: str | None = Field(default=None, max_length=32)
    status: str = Field(default=Status.BOT.value, max_length=16)
    assignee_id: str | None = Field(default=None, max_length=32, index=True)
    last_agent_id: str | None = Field(default=None, max_length=32)
    handoff_reason: str | None = Field(default=None, max_length=64)
    bot_offered_human: bool = False
    last_seq: int = 0
    queued_at: datetime | None = _ts_opt()
    resolved_at: datetime | None = _ts_opt()
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class Participant(SQLModel, table=True):
    __tablename__ = "participants"
    conversation_id: str = Field(foreign_key="conversations.id", primary_key=True, max_length=32)
    kind: str = Field(primary_key=True, max_length=8)
    participant_id: str = Field(primary_key=True, max_length=200)
    tenant_id: str = Field(index=True, max_length=32)
    read_seq: int = 0
    joined_at: datetime = _ts()


class Message(SQLModel, table=True):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "seq"),
        UniqueConstraint("conversation_id", "sender_kind", "sender_id", "client_msg_id"),
    )
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(index=True, max_length=32)
    conversation_id: str = Field(foreign_key="conversations.id", max_length=32)
    seq: int
    kind: str = Field(default="text", max_length=8)
    sender_kind: str = Field(max_length=8)
    sender_id: str = Field(max_length=200)
    sender_name: str | None = Field(default=None, max_length=200)
    text: str = Field(sa_column=Column(Text, nullable=False))
    citations: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    client_msg_id: str | None = Field(default=None, max_length=64)
    draft_id: str | None = Field(default=None, max_length=64)
    # What the message carries about its files (server.attachments): a summary each, or None.
    attachments: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = _ts()
    # Changed by its sender after it was sent (server.chat.edits): the current text is ``text``, the
    # earlier ones are in ``message_revisions``; a deleted message keeps its row, with no text.
    edited_at: datetime | None = _ts_opt()
    deleted_at: datetime | None = _ts_opt()
    # A quoted reply (server.chat.replies): the message replied to, and what the quote shows of it.
    reply_to_id: str | None = Field(default=None, max_length=32)
    quote: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # Quick replies, a card or a short form (server.chat.rich), sent by a bot or an agent.
    rich: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class OutboxRow(SQLModel, table=True):
    """Work that must follow a committed message: the bot's reply, a push. Written in the same
    transaction as the message, so a crash after commit is repaired by replay."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "topic", "done", "available_at"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(max_length=32)
    topic: str = Field(max_length=16)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    done: bool = False
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    available_at: datetime = _ts()
    claimed_until: datetime | None = _ts_opt()
    created_at: datetime = _ts()


class HandoffLog(SQLModel, table=True):
    """Every handoff-policy decision with its inputs, replayable offline."""

    __tablename__ = "handoff_log"
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(index=True, max_length=32)
    conversation_id: str = Field(index=True, max_length=32)
    action: str = Field(max_length=16)
    reason_code: str = Field(max_length=64)
    record: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts()
