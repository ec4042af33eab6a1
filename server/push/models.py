"""The push engine's tables. Each carries ``tenant_id``; every query filters on it. Timestamps are
stored as UTC (SQLite hands them back naive: read them through ``aware``)."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from server.core.models import new_id, utcnow
from server.core.secretbox import Sealed, SealedJSON

__all__ = [
    "Delivery",
    "Device",
    "Event",
    "Notification",
    "PendingWait",
    "Preferences",
    "PushRule",
    "PushTenantConfig",
    "aware",
]


def aware(dt: datetime) -> datetime:
    """SQLite drops the zone; everything we store is UTC."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def _ts() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


def _ts_opt() -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


def _json(default: Any = dict) -> Any:
    return Field(default_factory=default, sa_column=Column(JSON, nullable=False))


def _json_opt() -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=True))


class Device(SQLModel, table=True):
    __tablename__ = "push_devices"
    __table_args__ = (Index("ix_push_devices_user", "tenant_id", "user_id"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(max_length=32)
    user_id: str = Field(max_length=200)
    platform: str = Field(max_length=16)  # webpush | fcm | apns
    # Web Push: {"endpoint", "keys": {"p256dh", "auth"}}; FCM/APNs use ``token``
    subscription: dict[str, Any] | None = _json_opt()
    token: str | None = Field(default=None, max_length=4096)
    # the same subscription registered twice is one device
    fingerprint: str = Field(max_length=64)
    active: bool = True
    deactivated_reason: str | None = Field(default=None, max_length=200)
    created_at: datetime = _ts()


class PushRule(SQLModel, table=True):
    __tablename__ = "push_rules"
    __table_args__ = (Index("ix_push_rules_trigger", "tenant_id", "trigger_event"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(max_length=32)
    name: str = Field(max_length=200)
    trigger_event: str = Field(max_length=100)
    conditions: dict[str, Any] | None = _json_opt()
    wait_s: int | None = None
    cancel_on: list[str] = _json(list)
    category: str = Field(default="marketing", max_length=16)
    priority: int = 5
    critical: bool = False
    template: dict[str, Any] = _json()  # {title, body, url?, fallback?: {title, body}}
    variants: list[dict[str, Any]] | None = _json_opt()
    rewrite: bool = False  # let the optional copywriter rewrite the body
    max_delay_s: int = 0  # >0 allows best-time delivery within this delay
    per_rule_cap: dict[str, Any] | None = _json_opt()  # {count, window_s}
    collapse_key: str | None = Field(default=None, max_length=64)
    goal_event: str | None = Field(default=None, max_length=100)
    enabled: bool = True
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class Event(SQLModel, table=True):
    __tablename__ = "push_events"
    __table_args__ = (
        UniqueConstraint("tenant_id", "event_id", name="uq_push_events_event_id"),
        Index("ix_push_events_user", "tenant_id", "user_id", "occurred_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(max_length=32)
    event_id: str = Field(max_length=200)
    user_id: str = Field(max_length=200)
    name: str = Field(max_length=100)
    properties: dict[str, Any] = _json()
    occurred_at: datetime = _ts()
    received_at: datetime = _ts()


class Notification(SQLModel, table=True):
    __tablename__ = "push_notifications"
    __table_args__ = (
        UniqueConstraint("tenant_id", "dedupe_key", name="uq_push_notifications_dedupe"),
        Index("ix_push_notifications_user", "tenant_id", "user_id", "created_at"),
        Index("ix_push_notifications_rule", "tenant_id", "rule_id"),
    )
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(max_length=32)
    user_id: str = Field(max_length=200)
    rule_id: str | None = Field(default=None, max_length=32)
    event_id: str | None = Field(default=None, max_length=200)
    category: str = Field(max_length=16)
    critical: bool = False
    title: str = Field(max_length=500)
    body: str = Field(sa_column=Column(Text, nullable=False))
    url: str | None = Field(default=None, max_length=2000)
    data: dict[str, Any] = _json()
    decision: str = Field(max_length=16)  # send_now | send_at | suppress
    reasons: list[str] = _json(list)
    suppress_reason: str | None = Field(default=None, max_length=64)
    send_at: datetime | None = _ts_opt()
    # suppressed | scheduled | delivered | failed | collapsed | no_target
    status: str = Field(max_length=16)
    channel: str | None = Field(default=None, max_length=16)  # inapp | push
    collapse_key: str | None = Field(default=None, max_length=200)
    dedupe_key: str = Field(max_length=300)
    variant: str | None = Field(default=None, max_length=64)
    rewrite_pending: bool = False  # the copywriter rewrites at send time, outside any transaction
    opened_at: datetime | None = _ts_opt()
    converted_at: datetime | None = _ts_opt()
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class Delivery(SQLModel, table=True):
    """One row per (notification, target): the dedupe guard of at-least-once delivery."""

    __tablename__ = "push_deliveries"
    __table_args__ = (UniqueConstraint("notification_id", "device_id", name="uq_push_deliveries"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(max_length=32)
    notification_id: str = Field(max_length=32, index=True)
    device_id: str = Field(max_length=32)  # a device id, 'inapp' or 'webhook'
    # pending | delivered | retry | deactivated | failed | dead
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    updated_at: datetime = _ts()


class Preferences(SQLModel, table=True):
    __tablename__ = "push_preferences"
    tenant_id: str = Field(primary_key=True, max_length=32)
    user_id: str = Field(primary_key=True, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    quiet_start: str | None = Field(default=None, max_length=5)  # "HH:MM" local
    quiet_end: str | None = Field(default=None, max_length=5)
    opted_out: list[str] = _json(list)  # categories, or "all"
    updated_at: datetime = _ts()


class PushTenantConfig(SQLModel, table=True):
    __tablename__ = "push_tenant_config"
    tenant_id: str = Field(primary_key=True, max_length=32)
    # credentials are sealed at rest (server.core.secretbox)
    vapid_private_key: str | None = Field(default=None, sa_column=Column(Sealed, nullable=True))  # b64url scalar
    vapid_public_key: str | None = Field(default=None, max_length=200)  # uncompressed point, b64url
    vapid_subject: str | None = Field(default=None, max_length=200)
    fcm_service_account: dict[str, Any] | None = Field(default=None, sa_column=Column(SealedJSON, nullable=True))
    apns_key_pem: str | None = Field(default=None, sa_column=Column(Sealed, nullable=True))
    apns_key_id: str | None = Field(default=None, max_length=32)
    apns_team_id: str | None = Field(default=None, max_length=32)
    apns_topic: str | None = Field(default=None, max_length=200)
    apns_sandbox: bool = False
    webhook_url: str | None = Field(default=None, max_length=2000)
    webhook_secret: str | None = Field(default=None, sa_column=Column(Sealed, nullable=True))
    budget_count: int | None = None
    budget_window_s: int | None = None
    created_at: datetime = _ts()


class PendingWait(SQLModel, table=True):
    """A rule that matched but waits ("cart abandoned: 30 min unless order.placed")."""

    __tablename__ = "push_pending_waits"
    __table_args__ = (
        UniqueConstraint("tenant_id", "rule_id", "event_id", name="uq_push_waits"),
        Index("ix_push_waits_user", "tenant_id", "user_id", "status"),
    )
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(max_length=32)
    rule_id: str = Field(max_length=32)
    user_id: str = Field(max_length=200)
    event_id: str = Field(max_length=200)
    cancel_on: list[str] = _json(list)
    trigger_at: datetime = _ts()
    due_at: datetime = _ts()
    status: str = Field(default="pending", max_length=16)  # pending | cancelled | fired
    cancelled_by: str | None = Field(default=None, max_length=200)
    created_at: datetime = _ts()
