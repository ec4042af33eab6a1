"""FCM HTTP v1: a service-account JWT (RS256) exchanged at the token endpoint for an OAuth access
token (cached per tenant until shortly before it expires), then ``messages:send``."""

import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt

from server.core.settings import PushSettings
from server.push.egress import EgressPolicy, EgressRefused, Unresolved
from server.push.models import PushTenantConfig
from server.push.providers.base import DeliveryResult, DeviceTarget, PushMessage, classify_status

__all__ = ["FCM_SCOPE", "FcmProvider"]

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
_DEACTIVATE = {"UNREGISTERED", "SENDER_ID_MISMATCH"}
_RETRY = {"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"}


class FcmProvider:
    platform = "fcm"

    def __init__(self, client: httpx.AsyncClient, settings: PushSettings | None = None,
                 clock: Callable[[], float] = time.time,
                 base_url: str = "https://fcm.googleapis.com", egress: EgressPolicy | None = None) -> None:
        self.client = client
        self.settings = settings or PushSettings()
        self.egress = egress or EgressPolicy.from_settings(self.settings)
        self.clock = clock
        self.base_url = base_url.rstrip("/")
        self._tokens: dict[str, tuple[str, float]] = {}

    async def _access_token(self, tenant_id: str, account: dict[str, Any]) -> str:
        now = self.clock()
        cached = self._tokens.get(tenant_id)
        if cached is not None and cached[1] - 60 > now:
            return cached[0]
        token_uri = account.get("token_uri", "https://oauth2.googleapis.com/token")
        if not isinstance(token_uri, str):
            raise EgressRefused("token_uri must be a string")
        self.egress.check_url(token_uri, "fcm_token")  # a tenant supplies this URL
        assertion = jwt.encode(
            {"iss": account["client_email"], "scope": FCM_SCOPE, "aud": token_uri,
             "iat": int(now), "exp": int(now) + 3600},
            account["private_key"], algorithm="RS256",
            headers={"kid": account["private_key_id"]} if account.get("private_key_id") else None,
        )
        resp = await self.client.post(
            token_uri,
            data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
            timeout=self.settings.provider_timeout_s,
        )
        resp.raise_for_status()
        body = resp.json()
        token = str(body["access_token"])
        self._tokens[tenant_id] = (token, now + float(body.get("expires_in", 3600)))
        return token

    async def _token_or_failure(self, tenant_id: str, account: dict[str, Any]) -> str | DeliveryResult:
        """The tenant's OAuth access token, or why there is none (retry or permanent)."""
        try:
            return await self._access_token(tenant_id, account)
        except Unresolved:  # DNS trouble is temporary; a bad answer is not
            return DeliveryResult.retry("dns: the host did not resolve")
        except EgressRefused as exc:
            return DeliveryResult.permanent(f"token_uri refused: {exc}")
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            return DeliveryResult.retry(f"oauth transport: {type(exc).__name__}")
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code >= 500 or exc.response.status_code == 429:
                return classify_status(exc.response, "oauth")
            return DeliveryResult.permanent(f"oauth rejected: {exc.response.status_code}")
        except (KeyError, ValueError, jwt.PyJWTError) as exc:
            return DeliveryResult.permanent(f"bad service account: {type(exc).__name__}")

    async def send(self, target: DeviceTarget, message: PushMessage, config: PushTenantConfig) -> DeliveryResult:
        account = config.fcm_service_account
        if not account or not target.token:
            return DeliveryResult.permanent("fcm not configured for this tenant" if not account else "no token")
        token = await self._token_or_failure(config.tenant_id, account)
        if isinstance(token, DeliveryResult):
            return token
        msg = _fcm_message(target.token, message)
        url = f"{self.base_url}/v1/projects/{account.get('project_id', '')}/messages:send"
        try:
            resp = await self.client.post(url, json={"message": msg},
                                          headers={"Authorization": f"Bearer {token}"},
                                          timeout=self.settings.provider_timeout_s)
        except Unresolved:  # DNS trouble is temporary; a bad answer is not
            return DeliveryResult.retry("dns: the host did not resolve")
        except EgressRefused as exc:
            return DeliveryResult.permanent(f"fcm refused: {exc}")
        except httpx.TimeoutException:
            return DeliveryResult.retry("timeout")
        except httpx.HTTPError as exc:
            return DeliveryResult.retry(f"transport: {type(exc).__name__}")
        if resp.status_code == 401:
            self._tokens.pop(config.tenant_id, None)  # stale access token: fetch a new one next time
            return DeliveryResult.retry("401 access token rejected", 0.0)
        code = _error_code(resp)
        if code in _DEACTIVATE:
            return DeliveryResult.deactivate(f"{resp.status_code} {code}")
        if code in _RETRY and resp.status_code < 500 and resp.status_code != 429:
            return DeliveryResult.retry(f"{resp.status_code} {code}")
        return classify_status(resp, code)


def _fcm_message(token: str, message: PushMessage) -> dict[str, Any]:
    data = {k: str(v) for k, v in message.data.items()}
    data["notification_id"] = message.notification_id
    if message.url:
        data["url"] = message.url
    msg: dict[str, Any] = {
        "token": token,
        "notification": {"title": message.title, "body": message.body},
        "data": data,
        "android": {"priority": "HIGH" if message.urgent else "NORMAL", "ttl": f"{message.ttl_s}s"},
    }
    if message.collapse_key:
        msg["android"]["collapse_key"] = message.collapse_key[:64]
        msg["apns"] = {"headers": {"apns-collapse-id": message.collapse_key[:64]}}
    return msg


def _error_code(resp: httpx.Response) -> str:
    if resp.status_code < 400:
        return ""
    try:
        err = resp.json().get("error", {})
    except ValueError:
        return ""
    for d in err.get("details", []) or []:
        if isinstance(d, dict) and d.get("errorCode"):
            return str(d["errorCode"])
    return str(err.get("status", ""))
