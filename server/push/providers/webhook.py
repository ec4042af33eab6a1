"""A signed webhook for a tenant's own channels. Signature: ``X-Parley-Signature: v1=<hex>``, the
HMAC-SHA256 of ``"{timestamp}.{body}"`` with the tenant's secret, and ``X-Parley-Timestamp``, so
receivers can reject replays older than a tolerance."""

import hashlib
import hmac
import json
import time
from collections.abc import Callable

import httpx

from server.core.settings import PushSettings
from server.push.egress import EgressPolicy, EgressRefused, Unresolved
from server.push.models import PushTenantConfig
from server.push.providers.base import DeliveryResult, DeviceTarget, PushMessage, classify_status

__all__ = ["WebhookProvider", "sign", "verify"]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: str, timestamp: int, body: bytes, signature: str, *, now: float,
           tolerance_s: int = 300) -> bool:
    if abs(now - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookProvider:
    platform = "webhook"

    def __init__(self, client: httpx.AsyncClient, settings: PushSettings | None = None,
                 clock: Callable[[], float] = time.time, egress: EgressPolicy | None = None) -> None:
        self.client = client
        self.settings = settings or PushSettings()
        self.clock = clock
        self.egress = egress or EgressPolicy.from_settings(self.settings)

    async def send(self, target: DeviceTarget, message: PushMessage, config: PushTenantConfig) -> DeliveryResult:
        if not config.webhook_url or not config.webhook_secret:
            return DeliveryResult.permanent("webhook not configured")
        try:
            self.egress.check_url(config.webhook_url, "webhook")
        except EgressRefused as exc:
            return DeliveryResult.permanent(f"webhook refused: {exc}")
        body = json.dumps({"type": "notification", "user_id": message.user_id,
                           "category": message.category, "notification": message.payload()},
                          separators=(",", ":")).encode()
        ts = int(self.clock())
        headers = {"Content-Type": "application/json", "X-Parley-Timestamp": str(ts),
                   "X-Parley-Signature": sign(config.webhook_secret, ts, body),
                   "Idempotency-Key": message.notification_id}
        try:
            resp = await self.client.post(config.webhook_url, content=body, headers=headers,
                                          timeout=self.settings.provider_timeout_s)
        except Unresolved:  # DNS trouble is temporary; a bad answer is not
            return DeliveryResult.retry("dns: the host did not resolve")
        except EgressRefused as exc:
            return DeliveryResult.permanent(f"webhook refused: {exc}")
        except httpx.TimeoutException:
            return DeliveryResult.retry("timeout")
        except httpx.HTTPError as exc:
            return DeliveryResult.retry(f"transport: {type(exc).__name__}")
        if resp.status_code in (404, 410):
            # the tenant's endpoint is gone, not a device: fail rather than "deactivate"
            return DeliveryResult.permanent(f"{resp.status_code} webhook endpoint gone")
        return classify_status(resp)
