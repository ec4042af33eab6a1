"""Each provider against every answer it must understand (respx / MockTransport, no network)."""

import json
import time

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from server.push.models import PushTenantConfig
from server.push.providers import (
    ApnsProvider,
    DeviceTarget,
    FcmProvider,
    PushMessage,
    WebhookProvider,
    WebPushProvider,
)
from server.push.providers.base import parse_retry_after
from server.push.providers.webhook import verify
from server.push.providers.webpush import generate_vapid_keys
from tests.push.conftest import local_push_settings, new_browser_sub
from tests.push.pushfakes import PushService

MSG = PushMessage("n1", "u1", "Hello", "World", url="/x", data={"k": 1}, category="support",
                  collapse_key="conv:abc")


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def _rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _ec_pem() -> tuple[str, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode(), key


@pytest.fixture(scope="module")
def fcm_config() -> PushTenantConfig:
    return PushTenantConfig(tenant_id="t1", fcm_service_account={
        "client_email": "svc@proj.iam.gserviceaccount.com", "private_key": _rsa_pem(), "private_key_id": "kid1",
        "project_id": "proj", "token_uri": "https://oauth2.googleapis.com/token"})


def _fcm_error(status: int, code: str, retry_after: str | None = None) -> httpx.Response:
    body = {"error": {"code": status, "status": code,
                      "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]}}
    return httpx.Response(status, json=body, headers={"Retry-After": retry_after} if retry_after else {})


@pytest.mark.parametrize(("answer", "kind", "after"), [
    (httpx.Response(200, json={"name": "projects/proj/messages/1"}), "delivered", None),
    (_fcm_error(404, "UNREGISTERED"), "deactivate", None),
    (_fcm_error(400, "UNREGISTERED"), "deactivate", None),
    (_fcm_error(400, "INVALID_ARGUMENT"), "permanent_failure", None),
    (_fcm_error(429, "QUOTA_EXCEEDED", "37"), "retry", 37.0),
    (_fcm_error(503, "UNAVAILABLE"), "retry", None),
    (_fcm_error(500, "INTERNAL"), "retry", None),
    (httpx.Response(413), "permanent_failure", None),
])
async def test_fcm_answers(fcm_config: PushTenantConfig, answer: httpx.Response, kind: str,
                           after: float | None) -> None:
    clock = Clock()
    with respx.mock(assert_all_called=True) as router:
        token = router.post("https://oauth2.googleapis.com/token").respond(
            200, json={"access_token": "ya29.tok", "expires_in": 3600})
        send = router.post("https://fcm.googleapis.com/v1/projects/proj/messages:send").mock(return_value=answer)
        async with httpx.AsyncClient() as client:
            fcm = FcmProvider(client, clock=clock)
            r1 = await fcm.send(DeviceTarget("d1", "fcm", token="tok-1"), MSG, fcm_config)
            r2 = await fcm.send(DeviceTarget("d1", "fcm", token="tok-1"), MSG, fcm_config)
    assert r1.kind == r2.kind == kind
    assert r1.retry_after_s == after
    assert token.call_count == 1  # the access token is cached
    assertion = dict(httpx.QueryParams(token.calls[0].request.content.decode()))["assertion"]
    claims = jwt.decode(assertion, options={"verify_signature": False})
    assert claims["scope"].endswith("firebase.messaging") and jwt.get_unverified_header(assertion)["alg"] == "RS256"
    req = send.calls[0].request
    assert req.headers["authorization"] == "Bearer ya29.tok"
    body = json.loads(req.content)["message"]
    assert body["token"] == "tok-1" and body["notification"] == {"title": "Hello", "body": "World"}
    assert body["android"]["collapse_key"] == "conv:abc" and body["data"]["url"] == "/x"


async def test_fcm_token_refreshed_after_expiry_and_on_401(fcm_config: PushTenantConfig) -> None:
    clock = Clock()
    with respx.mock() as router:
        token = router.post("https://oauth2.googleapis.com/token").respond(
            200, json={"access_token": "tok", "expires_in": 3600})
        send = router.post("https://fcm.googleapis.com/v1/projects/proj/messages:send")
        send.side_effect = [httpx.Response(200, json={}), httpx.Response(401), httpx.Response(200, json={})]
        async with httpx.AsyncClient() as client:
            fcm = FcmProvider(client, clock=clock)
            assert (await fcm.send(DeviceTarget("d", "fcm", token="t"), MSG, fcm_config)).kind == "delivered"
            r = await fcm.send(DeviceTarget("d", "fcm", token="t"), MSG, fcm_config)
            assert r.kind == "retry" and r.retry_after_s == 0.0
            clock.t += 10
            assert (await fcm.send(DeviceTarget("d", "fcm", token="t"), MSG, fcm_config)).kind == "delivered"
    assert token.call_count == 2


async def test_fcm_transport_errors_retry(fcm_config: PushTenantConfig) -> None:
    with respx.mock() as router:
        router.post("https://oauth2.googleapis.com/token").respond(200, json={"access_token": "t", "expires_in": 60})
        router.post("https://fcm.googleapis.com/v1/projects/proj/messages:send").mock(
            side_effect=httpx.ConnectTimeout("slow"))
        async with httpx.AsyncClient() as client:
            r = await FcmProvider(client).send(DeviceTarget("d", "fcm", token="t"), MSG, fcm_config)
    assert r.kind == "retry" and r.reason == "timeout"


@pytest.fixture(scope="module")
def apns() -> tuple[PushTenantConfig, ec.EllipticCurvePrivateKey]:
    pem, key = _ec_pem()
    return PushTenantConfig(tenant_id="t1", apns_key_pem=pem, apns_key_id="KEY123", apns_team_id="TEAM99",
                            apns_topic="com.acme.app"), key


TOKEN = "a" * 64


@pytest.mark.parametrize(("status", "reason", "kind", "after"), [
    (200, None, "delivered", None),
    (400, "BadDeviceToken", "deactivate", None),
    (410, "Unregistered", "deactivate", None),
    (400, "DeviceTokenNotForTopic", "deactivate", None),
    (413, "PayloadTooLarge", "permanent_failure", None),
    (429, "TooManyRequests", "retry", 12.0),
    (500, "InternalServerError", "retry", None),
    (503, "ServiceUnavailable", "retry", None),
    (403, "ExpiredProviderToken", "retry", 0.0),
    (400, "BadCollapseId", "permanent_failure", None),
])
async def test_apns_answers(apns: tuple[PushTenantConfig, ec.EllipticCurvePrivateKey], status: int,
                            reason: str | None, kind: str, after: float | None) -> None:
    config, key = apns
    clock = Clock()
    url = f"https://api.push.apple.com/3/device/{TOKEN}"
    headers = {"retry-after": "12"} if status == 429 else {}
    with respx.mock() as router:
        route = router.post(url).respond(status, json={"reason": reason} if reason else None, headers=headers)
        async with httpx.AsyncClient(http2=True) as client:
            r = await ApnsProvider(client, clock=clock).send(DeviceTarget("d", "apns", token=TOKEN), MSG, config)
    assert (r.kind, r.retry_after_s) == (kind, after)
    req = route.calls[0].request
    assert req.headers["apns-topic"] == "com.acme.app"
    assert req.headers["apns-push-type"] == "alert" and req.headers["apns-collapse-id"] == "conv:abc"
    assert req.headers["apns-priority"] == "10"
    bearer = req.headers["authorization"].split()[1]
    pub = key.public_key()
    claims = jwt.decode(bearer, pub, algorithms=["ES256"])
    assert claims["iss"] == "TEAM99" and jwt.get_unverified_header(bearer)["kid"] == "KEY123"
    payload = json.loads(req.content)
    assert payload["aps"]["alert"] == {"title": "Hello", "body": "World"} and payload["url"] == "/x"


async def test_apns_provider_token_cached_under_an_hour(
    apns: tuple[PushTenantConfig, ec.EllipticCurvePrivateKey],
) -> None:
    config, _ = apns
    clock = Clock()
    async with httpx.AsyncClient(http2=True) as client:
        p = ApnsProvider(client, clock=clock)
        t1 = p.provider_token(config)
        clock.t += 49 * 60
        assert p.provider_token(config) == t1
        clock.t += 2 * 60
        assert p.provider_token(config) != t1


@pytest.mark.parametrize(("status", "headers", "kind", "after"), [
    (201, {}, "delivered", None),
    (404, {}, "deactivate", None),
    (410, {}, "deactivate", None),
    (413, {}, "permanent_failure", None),
    (429, {"Retry-After": "90"}, "retry", 90.0),
    (502, {}, "retry", None),
])
async def test_webpush_answers(status: int, headers: dict[str, str], kind: str, after: float | None) -> None:
    service = PushService()
    sub = service.register(new_browser_sub("https://push.local/s"))
    priv, pub = generate_vapid_keys()
    config = PushTenantConfig(tenant_id="t1", vapid_private_key=priv, vapid_public_key=pub)

    def answer(req: httpx.Request) -> httpx.Response | None:
        if status == 201:
            return None  # decrypt and accept
        return httpx.Response(status, headers=headers)

    service.answer = answer
    async with service.client() as client:
        provider = WebPushProvider(client, local_push_settings())
        r = await provider.send(DeviceTarget("d", "webpush", subscription=sub.subscription), MSG, config)
    assert (r.kind, r.retry_after_s) == (kind, after)
    if status == 201:
        assert service.received[0]["title"] == "Hello" and service.received[0]["body"] == "World"
        h = service.headers[0]
        assert h["urgency"] == "high" and len(h["topic"]) <= 32 and h["ttl"] == "86400"
        assert h["authorization"].startswith("vapid t=") and f"k={pub}" in h["authorization"]


async def test_webpush_oversized_payload_is_not_sent() -> None:
    service = PushService()
    sub = service.register(new_browser_sub("https://push.local/big"))
    priv, pub = generate_vapid_keys()
    config = PushTenantConfig(tenant_id="t1", vapid_private_key=priv, vapid_public_key=pub)
    big = PushMessage("n", "u", "t", "x" * 5000)
    async with service.client() as client:
        provider = WebPushProvider(client, local_push_settings())
        r = await provider.send(DeviceTarget("d", "webpush", subscription=sub.subscription), big, config)
    assert r.kind == "permanent_failure" and r.reason.startswith("payload_too_large")
    assert service.received == []


async def test_webhook_is_signed() -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(204)

    config = PushTenantConfig(tenant_id="t1", webhook_url="https://hooks.acme.test/push", webhook_secret="sekrit")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        r = await WebhookProvider(client, clock=lambda: 1000.0).send(DeviceTarget("webhook", "webhook"), MSG, config)
    assert r.kind == "delivered"
    req = seen[0]
    ts = int(req.headers["x-parley-timestamp"])
    assert verify("sekrit", ts, req.content, req.headers["x-parley-signature"], now=1010.0)
    assert not verify("wrong", ts, req.content, req.headers["x-parley-signature"], now=1010.0)
    assert not verify("sekrit", ts, req.content, req.headers["x-parley-signature"], now=5000.0)
    assert json.loads(req.content)["notification"]["id"] == "n1"


def test_retry_after_http_date() -> None:
    now = time.time()
    hdr = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 120))
    got = parse_retry_after(hdr, now)
    assert got is not None and 118 <= got <= 121
    assert parse_retry_after("soon") is None
