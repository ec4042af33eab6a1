"""Web Push: RFC 8291 message encryption (aes128gcm, via http_ece) and RFC 8292 VAPID (via
py-vapid), sent with an injected ``httpx.AsyncClient``. TTL, Urgency and Topic headers."""

import base64
import hashlib
import json
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import http_ece
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from server.core.settings import PushSettings
from server.push.egress import EgressPolicy, EgressRefused, Unresolved
from server.push.models import PushTenantConfig
from server.push.providers.base import DeliveryResult, DeviceTarget, PushMessage, classify_status

__all__ = ["WebPushProvider", "b64url", "b64url_decode", "encrypt_payload", "generate_vapid_keys", "topic_for"]


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def generate_vapid_keys() -> tuple[str, str]:
    """(private scalar, public uncompressed point), both base64url: the browser's
    ``applicationServerKey`` is the public one."""
    key = ec.generate_private_key(ec.SECP256R1())
    priv = key.private_numbers().private_value.to_bytes(32, "big")
    pub = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64url(priv), b64url(pub)


def encrypt_payload(plaintext: bytes, p256dh: str, auth: str) -> bytes:
    """RFC 8291: an ephemeral ECDH key per message, aes128gcm content coding."""
    server_key = ec.generate_private_key(ec.SECP256R1())
    out: bytes = http_ece.encrypt(
        plaintext,
        salt=None,
        private_key=server_key,
        dh=b64url_decode(p256dh),
        auth_secret=b64url_decode(auth),
        version="aes128gcm",
    )
    return out


def topic_for(collapse_key: str) -> str:
    """RFC 8030 Topic: at most 32 characters of the URL-safe base64 alphabet."""
    return b64url(hashlib.sha256(collapse_key.encode()).digest())[:32]


class WebPushProvider:
    platform = "webpush"

    def __init__(self, client: httpx.AsyncClient, settings: PushSettings | None = None,
                 clock: Callable[[], float] = time.time, egress: EgressPolicy | None = None) -> None:
        self.client = client
        self.settings = settings or PushSettings()
        self.clock = clock
        self.egress = egress or EgressPolicy.from_settings(self.settings)
        # (tenant, audience) -> (Authorization header, expires at); signing per send is wasted work
        self._vapid: dict[tuple[str, str], tuple[str, float]] = {}
        self._signers: dict[str, tuple[str, Vapid02]] = {}

    def _authorization(self, config: PushTenantConfig, audience: str) -> str:
        if not config.vapid_private_key:
            raise ValueError("tenant has no VAPID key")
        now = self.clock()
        cached = self._vapid.get((config.tenant_id, audience))
        if cached is not None and cached[1] - 3600 > now and self._signers.get(config.tenant_id, ("",))[0] \
                == config.vapid_private_key:
            return cached[0]
        signer = self._signers.get(config.tenant_id)
        if signer is None or signer[0] != config.vapid_private_key:
            signer = (config.vapid_private_key, Vapid02.from_raw(config.vapid_private_key.encode()))
            self._signers[config.tenant_id] = signer
        exp = int(now) + self.settings.vapid_token_ttl_s
        claims = {"aud": audience, "exp": exp, "sub": config.vapid_subject or self.settings.vapid_subject}
        header: str = signer[1].sign(claims)["Authorization"]
        self._vapid[(config.tenant_id, audience)] = (header, float(exp))
        return header

    async def send(self, target: DeviceTarget, message: PushMessage, config: PushTenantConfig) -> DeliveryResult:
        sub = target.subscription or {}
        endpoint = sub.get("endpoint")
        keys = sub.get("keys") or {}
        if not isinstance(endpoint, str) or not keys.get("p256dh") or not keys.get("auth"):
            return DeliveryResult.deactivate("subscription lacks endpoint or keys")
        try:
            self.egress.check_url(endpoint, "webpush")
        except EgressRefused as exc:
            # stored before the rules tightened, or edited in the database: never worth a retry
            return DeliveryResult.deactivate(f"endpoint refused: {exc}")
        parts = urlsplit(endpoint)
        audience = f"{parts.scheme}://{parts.netloc}"
        plaintext = json.dumps(message.payload(), separators=(",", ":"), ensure_ascii=False).encode()
        try:
            body = encrypt_payload(plaintext, keys["p256dh"], keys["auth"])
        except Exception as exc:  # noqa: BLE001 (a malformed client key is the device's fault, not a retry)
            return DeliveryResult.deactivate(f"bad subscription keys: {type(exc).__name__}")
        if len(body) > self.settings.webpush_max_payload_bytes:
            return DeliveryResult.permanent(f"payload_too_large: {len(body)} bytes")
        headers = {
            "Authorization": self._authorization(config, audience),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(message.ttl_s),
            "Urgency": "high" if message.urgent else "normal",
        }
        if message.collapse_key:
            headers["Topic"] = topic_for(message.collapse_key)
        try:
            resp = await self.client.post(endpoint, content=body, headers=headers,
                                          timeout=self.settings.provider_timeout_s)
        except Unresolved:  # DNS trouble is temporary; a bad answer is not
            return DeliveryResult.retry("dns: the host did not resolve")
        except EgressRefused as exc:  # the name now resolves somewhere it must not go
            return DeliveryResult.deactivate(f"endpoint refused: {exc}")
        except httpx.TimeoutException:
            return DeliveryResult.retry("timeout")
        except httpx.HTTPError as exc:
            return DeliveryResult.retry(f"transport: {type(exc).__name__}")
        return classify_status(resp)
