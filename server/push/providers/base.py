"""What every provider shares: the message, the target, the result, and the translation of HTTP
answers into results. Providers never raise for a provider answer; transport errors become
``retry``."""

import email.utils
import time
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, Literal, Protocol

import httpx

from server.push.models import PushTenantConfig

__all__ = [
    "DeliveryResult",
    "DeviceTarget",
    "Provider",
    "PushMessage",
    "classify_status",
    "parse_retry_after",
]

ResultKind = Literal["delivered", "retry", "deactivate", "permanent_failure"]


@dataclass(frozen=True, slots=True)
class PushMessage:
    notification_id: str
    user_id: str
    title: str
    body: str
    url: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    category: str = "marketing"
    critical: bool = False
    collapse_key: str | None = None
    ttl_s: int = 86400

    def payload(self) -> dict[str, Any]:
        """The JSON shown to service workers / apps, and the in-app frame's ``notification``."""
        return {"id": self.notification_id, "title": self.title, "body": self.body,
                "url": self.url, "data": self.data}

    @property
    def urgent(self) -> bool:
        return self.critical or self.category in ("transactional", "support")


@dataclass(frozen=True, slots=True)
class DeviceTarget:
    id: str
    platform: str
    token: str | None = None
    subscription: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    kind: ResultKind
    retry_after_s: float | None = None
    reason: str = ""

    @classmethod
    def delivered(cls) -> "DeliveryResult":
        return cls("delivered")

    @classmethod
    def retry(cls, reason: str, after: float | None = None) -> "DeliveryResult":
        return cls("retry", after, reason)

    @classmethod
    def deactivate(cls, reason: str) -> "DeliveryResult":
        return cls("deactivate", None, reason)

    @classmethod
    def permanent(cls, reason: str) -> "DeliveryResult":
        return cls("permanent_failure", None, reason)


class Provider(Protocol):
    platform: str

    async def send(self, target: DeviceTarget, message: PushMessage, config: PushTenantConfig) -> DeliveryResult:
        ...


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    ref = now if now is not None else time.time()
    return max(0.0, when.timestamp() - ref)


def classify_status(resp: httpx.Response, reason: str = "") -> DeliveryResult:
    """The common mapping; providers refine it with their own error codes first."""
    s = resp.status_code
    why = f"{s} {reason}".strip()
    if 200 <= s < 300:
        return DeliveryResult.delivered()
    if s in (404, 410):
        return DeliveryResult.deactivate(why)
    if s == 413:
        return DeliveryResult.permanent(f"payload_too_large: {why}")
    if s == 429:
        return DeliveryResult.retry(why, parse_retry_after(resp.headers.get("retry-after")))
    if s >= 500 or s == 408:
        return DeliveryResult.retry(why, parse_retry_after(resp.headers.get("retry-after")))
    return DeliveryResult.permanent(why)


