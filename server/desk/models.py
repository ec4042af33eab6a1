"""The desk's tables: canned responses (a tenant's, or one agent's own), labels a tenant defines,
which labels a conversation carries, the end user's rating of a conversation (CSAT), the agents a
private note mentions, the team a conversation is routed to (and until when it is snoozed), and a
tenant's routing rules."""

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Column, DateTime, ForeignKey, Index, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from server.core.models import new_id, utcnow

__all__ = ["CannedResponse", "ConversationLabel", "ConversationRoute", "Label", "NoteMention", "Rating",
           "RoutingRule"]


def _ts() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class CannedResponse(SQLModel, table=True):
    """A saved reply. ``agent_id`` None: the tenant's (managed by its admins); else one agent's own."""

    __tablename__ = "canned_responses"
    __table_args__ = (Index("ix_canned_responses_owner", "tenant_id", "agent_id"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=32)
    agent_id: str | None = Field(default=None, foreign_key="agents.id", max_length=32)
    title: str = Field(max_length=200)
    shortcut: str = Field(max_length=64)
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class Label(SQLModel, table=True):
    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=32)
    name: str = Field(max_length=64)
    colour: str = Field(max_length=7)
    created_at: datetime = _ts()


class ConversationLabel(SQLModel, table=True):
    __tablename__ = "conversation_labels"
    __table_args__ = (Index("ix_conversation_labels_label", "tenant_id", "label_id"),)
    conversation_id: str = Field(foreign_key="conversations.id", primary_key=True, max_length=32)
    label_id: str = Field(foreign_key="labels.id", primary_key=True, max_length=32)
    tenant_id: str = Field(max_length=32)
    created_at: datetime = _ts()


class Rating(SQLModel, table=True):
    """The end user's rating of a conversation (1-5 and a comment) with who had resolved it when it was
    rated: ``resolver_kind`` "human" (``resolver_id`` the agent) or "ai" (``resolver_id`` the bot). One per
    conversation and kind: the AI's answers and a person's resolution of the same conversation are rated
    apart; rating the same kind again replaces the rating."""

    __tablename__ = "ratings"
    __table_args__ = (UniqueConstraint("conversation_id", "resolver_kind"),
                      Index("ix_ratings_tenant_created", "tenant_id", "created_at"),
                      CheckConstraint("score BETWEEN 1 AND 5", name="ck_ratings_score"))
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=32)
    conversation_id: str = Field(foreign_key="conversations.id", max_length=32)
    user_id: str = Field(max_length=200)
    score: int
    comment: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    resolver_kind: str = Field(max_length=8)
    resolver_id: str | None = Field(default=None, max_length=32)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


def _ts_opt() -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class NoteMention(SQLModel, table=True):
    """An agent named with ``@name`` / ``@email`` in a private note (a ``note`` message)."""

    __tablename__ = "note_mentions"
    __table_args__ = (Index("ix_note_mentions_agent", "tenant_id", "agent_id", "created_at"),)
    message_id: str = Field(foreign_key="messages.id", primary_key=True, max_length=32)
    agent_id: str = Field(foreign_key="agents.id", primary_key=True, max_length=32)
    tenant_id: str = Field(max_length=32)
    conversation_id: str = Field(max_length=32)
    author_id: str = Field(max_length=32)
    created_at: datetime = _ts()
    read_at: datetime | None = _ts_opt()


class ConversationRoute(SQLModel, table=True):
    """Where a conversation is routed: the team whose agents get it from the queue (a transfer to a
    team, or a routing rule), and until when its agent snoozed it."""

    __tablename__ = "conversation_routes"
    __table_args__ = (Index("ix_conversation_routes_snoozed", "tenant_id", "snoozed_until"),)
    conversation_id: str = Field(foreign_key="conversations.id", primary_key=True, max_length=32)
    tenant_id: str = Field(max_length=32)
    # a deleted team leaves the conversation in the tenant's queue
    team_id: str | None = Field(default=None, sa_column=Column(
        String(32), ForeignKey("teams.id", ondelete="SET NULL"), nullable=True))
    snoozed_until: datetime | None = _ts_opt()
    updated_at: datetime = _ts()


class RoutingRule(SQLModel, table=True):
    """A tenant's rule sending handed-off conversations to a team: ``kind`` ``topic`` (a keyword in
    the user's recent messages or the handoff reason) or ``attribute`` (a user attribute's value).
    Rules are tried in ``position`` order; the first that matches wins."""

    __tablename__ = "routing_rules"
    __table_args__ = (Index("ix_routing_rules_tenant", "tenant_id", "position"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=32)
    # a deleted team takes its rules with it
    team_id: str = Field(sa_column=Column(String(32), ForeignKey("teams.id", ondelete="CASCADE"), nullable=False))
    kind: str = Field(max_length=16)
    keyword: str | None = Field(default=None, max_length=100)
    attribute: str | None = Field(default=None, max_length=100)
    value: str | None = Field(default=None, max_length=200)
    position: int = 0
    created_at: datetime = _ts()
