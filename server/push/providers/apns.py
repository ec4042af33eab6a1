"""APNs over HTTP/2 (the injected client must be ``httpx.AsyncClient(http2=True)``) with an ES256
provider token, cached below Apple's one-hour limit, per tenant."""

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt

from server.core.settings import PushSettings
from server.push.models import PushTenantConfig
from server.push.providers.base import DeliveryResult, DeviceTarget, PushMessage, classify_status

__all__ = ["ApnsProvider"]

_DEACTIVATE = {"BadDeviceToken", "Unregistered", "DeviceTokenNotForTopic", "ExpiredToken"}
_TOKEN_RETRY = {"ExpiredProviderToken", "InvalidProviderToken"}
_TOO_LARGE = {"PayloadTooLarge"}


class ApnsProvider:
    platform = "apns"

    def __init__(self, client: httpx.AsyncClient, settings: PushSettings | None = None,
                 clock: Callable[[], float] = time.time,
                 base_url: str | None = None) -> None:
        self.client = client
        self.settings = settings or PushSettings()
        self.clock = clock
        self.base_url = base_url
        self._tokens: dict[str, tuple[str, float, str]] = {}

    def provider_token(self, config: PushTenantConfig) -> str:
        now = self.clock()
        fingerprint = f"{config.apns_key_id}:{config.apns_team_id}"
        cached = self._tokens.get(config.tenant_id)
        if cached is not None and cached[1] > now and cached[2] == fingerprint:
            return cached[0]
        token = jwt.encode({"iss": config.apns_team_id, "iat": int(now)}, config.apns_key_pem or "",
                           algorithm="ES256", headers={"kid": config.apns_key_id})
        self._tokens[config.tenant_id] = (token, now + self.settings.apns_token_ttl_s, fingerprint)
        return token

    async def send(self, target: DeviceTarget, message: PushMessage, config: PushTenantConfig) -> DeliveryResult:
        if not (config.apns_key_pem and config.apns_key_id and config.apns_team_id and config.apns_topic):
            return DeliveryResult.permanent("apns not configured for this tenant")
        if not target.token:
            return DeliveryResult.deactivate("no token")
        try:
            bearer = self.provider_token(config)
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            return DeliveryResult.permanent(f"bad apns key: {type(exc).__name__}")
        base = self.base_url or (
            "https://api.sandbox.push.apple.com" if config.apns_sandbox else "https://api.push.apple.com")
        payload: dict[str, Any] = {
            "aps": {"alert": {"title": message.title, "body": message.body}, "sound": "default"},
            "notification_id": message.notification_id,
            "data": message.data,
        }
        if message.url:
            payload["url"] = message.url
        if message.collapse_key:
            payload["aps"]["thread-id"] = message.collapse_key[:64]
        headers = {
            "authorization": f"bearer {bearer}",
            "apns-topic": config.apns_topic,
            "apns-push-type": "alert",
            "apns-priority": "10" if message.urgent else "5",
            "apns-expiration": str(int(self.clock()) + message.ttl_s),
        }
        if message.collapse_key:
            headers["apns-collapse-id"] = message.collapse_key.encode()[:64].decode(errors="ignore")
        try:
            resp = await self.client.post(f"{base}/3/device/{target.token}",
                                          content=json.dumps(payload, separators=(",", ":")).encode(),
                                          headers=headers, timeout=self.settings.provider_timeout_s)
        except httpx.TimeoutException:
            return DeliveryResult.retry("timeout")
        except httpx.HTTPError as exc:
            return DeliveryResult.retry(f"transport: {type(exc).__name__}")
        reason = _reason(resp)
        if reason in _DEACTIVATE:
            return DeliveryResult.deactivate(f"{resp.status_code} {reason}")
        if reason in _TOO_LARGE:
            return DeliveryResult.permanent(f"payload_too_large: {resp.status_code} {reason}")
        if reason in _TOKEN_RETRY:
            self._tokens.pop(config.tenant_id, None)
            return DeliveryResult.retry(f"{resp.status_code} {reason}", 0.0)
        return classify_status(resp, reason)


def _reason(resp: httpx.Response) -> str:
    if resp.status_code < 400:
        return ""
    try:
        return str(resp.json().get("reason", ""))
    except ValueError:
        return ""
