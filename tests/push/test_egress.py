"""Server-side request forgery through push: a visitor picks the Web Push endpoint, a tenant the
webhook URL and the FCM token URI. Refused at registration (resolved, every address classified)
and again when sending, where the connection is pinned to the checked address. Real sockets on
loopback only; names resolve through fake resolvers."""

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlmodel import select

from server.core.db import Database
from server.core.settings import PushSettings
from server.errors import BadInput
from server.push.egress import EgressPolicy, EgressRefused, GuardedTransport
from server.push.engine import PushEngine
from server.push.models import Device, PushRule, PushTenantConfig
from server.push.presence import MemoryPresence
from server.push.providers import DeviceTarget, FcmProvider, PushMessage, WebhookProvider, WebPushProvider
from server.push.providers.webpush import generate_vapid_keys
from server.push.worker import PushWorker
from tests.push.conftest import SimClock, make_tenant, make_user, new_browser_sub, public_resolver
from tests.push.test_routes import api  # noqa: F401  (the REST fixture)

MSG = PushMessage("n1", "u1", "Hello", "World")


@dataclass
class Listener:
    """A loopback HTTP server that counts connections: the proof that nothing was sent."""

    status: int = 201
    headers: dict[str, str] = field(default_factory=dict)
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        if length:
            await reader.readexactly(length)
        self.requests.append(head)
        extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        writer.write(f"HTTP/1.1 {self.status} X\r\ncontent-length: 0\r\n{extra}\r\n".encode())
        await writer.drain()
        writer.close()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    lst = Listener()
    server = await asyncio.start_server(lst.handle, "127.0.0.1", 0)
    lst.port = server.sockets[0].getsockname()[1]
    yield lst
    server.close()
    await server.wait_closed()


def resolver_to(*addresses: str) -> Callable[[str, int], list[str]]:
    return lambda host, port: list(addresses)


NON_GLOBAL = ["127.0.0.1", "169.254.169.254", "10.0.0.5", "172.16.3.4", "192.168.1.1", "100.64.0.1",
              "0.0.0.0", "224.0.0.1", "240.0.0.1", "::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
              "fc00::1", "fd12:3456::1", "fe80::1%eth0", "ff02::1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::"]


@pytest.mark.parametrize("address", NON_GLOBAL)
async def test_registration_refuses_endpoints_that_resolve_off_the_public_internet(
        db: Database, address: str) -> None:
    t = await make_tenant(db)
    engine = PushEngine(db, {}, MemoryPresence(), egress=EgressPolicy(resolver=resolver_to("8.8.8.8", address)))
    sub = new_browser_sub("https://updates.push.services.mozilla.com/wpush/v2/abc").subscription
    with pytest.raises(BadInput) as err:
        await engine.register_device(t.id, "u1", "webpush", sub)
    assert err.value.field == "subscription.endpoint"
    async with db.session() as s:
        assert (await s.exec(select(Device))).all() == []


@pytest.mark.parametrize("endpoint", [
    "http://updates.push.services.mozilla.com/wpush/v2/abc",  # not https
    "https://user:pw@fcm.googleapis.com/fcm/send/abc",  # userinfo
    "https://fcm.googleapis.com.evil.example/fcm/send/abc",  # a look-alike host
    "https://evil.example/?fcm.googleapis.com",
    "https://fcm.googleapis.com:8443/fcm/send/abc",  # an odd port
    "https://169.254.169.254/latest/meta-data/",
    "https://push.apple.com/x",  # "*.push.apple.com" is subdomains only
])
async def test_registration_refuses_unknown_hosts_schemes_ports_and_credentials(
        db: Database, endpoint: str) -> None:
    t = await make_tenant(db)
    engine = PushEngine(db, {}, MemoryPresence(), egress=EgressPolicy(resolver=public_resolver))
    with pytest.raises(BadInput) as err:
        await engine.register_device(t.id, "u1", "webpush", new_browser_sub(endpoint).subscription)
    assert err.value.field == "subscription.endpoint"


@pytest.mark.parametrize("endpoint", [
    "https://fcm.googleapis.com/fcm/send/abc:APA91b",
    "https://updates.push.services.mozilla.com/wpush/v2/gAAAAA",
    "https://web.push.apple.com/QGuQyavXutnMH",
    "https://wns2-par02p.notify.windows.com/w/?token=BQYAAA",
])
async def test_known_push_services_are_accepted(db: Database, endpoint: str) -> None:
    t = await make_tenant(db)
    engine = PushEngine(db, {}, MemoryPresence(), egress=EgressPolicy(resolver=public_resolver))
    dev = await engine.register_device(t.id, "u1", "webpush", new_browser_sub(endpoint).subscription)
    assert dev.active


async def test_rest_registration_of_a_loopback_endpoint_is_422(api: Any, listener: Listener) -> None:  # noqa: F811
    client, _ = api
    sub = new_browser_sub(f"http://127.0.0.1:{listener.port}/steal").subscription
    r = await client.post("/v1/devices", json={"platform": "webpush", "subscription": sub},
                          headers={"x-as": "user1"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "subscription.endpoint"
    assert listener.connections == 0


async def test_the_transport_pins_the_checked_address(listener: Listener) -> None:
    """An allowed name is dialled at the address the check saw, with the name in Host."""
    policy = EgressPolicy(extra_hosts=("push.test",), allow_http=True, allow_loopback=True,
                          resolver=resolver_to("127.0.0.1"))
    async with httpx.AsyncClient(transport=GuardedTransport(policy)) as client:
        r = await client.post(f"http://push.test:{listener.port}/x", content=b"hi")
    assert r.status_code == 201 and listener.connections == 1
    assert b"host: push.test" in listener.requests[0].lower()


async def test_the_transport_refuses_a_name_that_now_resolves_to_loopback(listener: Listener) -> None:
    policy = EgressPolicy(extra_hosts=("push.test",), allow_http=True, resolver=resolver_to("127.0.0.1"))
    async with httpx.AsyncClient(transport=GuardedTransport(policy)) as client:
        with pytest.raises(EgressRefused):
            await client.post(f"http://push.test:{listener.port}/x", content=b"hi")
    assert listener.connections == 0


async def test_dns_rebinding_after_registration_sends_nothing_and_deactivates(
        db: Database, clock: SimClock, listener: Listener) -> None:
    """Registered while the name resolved publicly; by send time it points at loopback."""
    answers = ["93.184.215.14"]
    settings = PushSettings(egress_hosts=("push.test",), egress_allow_http=True)
    policy = EgressPolicy.from_settings(settings, lambda host, port: list(answers))
    t = await make_tenant(db)
    await make_user(db, t.id, "u1", name="Uma")
    async with httpx.AsyncClient(transport=GuardedTransport(policy)) as client:
        engine = PushEngine(db, {"webpush": WebPushProvider(client, settings, clock=clock.ts, egress=policy)},
                            MemoryPresence(), clock=clock, settings=settings, egress=policy, rng=random.Random(1))
        sub = new_browser_sub(f"http://push.test:{listener.port}/u1").subscription
        dev = await engine.register_device(t.id, "u1", "webpush", sub)
        async with db.write() as s:
            s.add(PushRule(tenant_id=t.id, name="r", trigger_event="go", category="transactional",
                           template={"title": "Hi", "body": "there"}))
        await engine.ingest_events(t.id, [{"event_id": "e1", "user_id": "u1", "name": "go"}])
        answers[:] = ["127.0.0.1"]
        await PushWorker(engine).drain()
    assert listener.connections == 0
    async with db.session() as s:
        row = await s.get(Device, dev.id)
    assert row is not None and not row.active and "refused" in (row.deactivated_reason or "")


async def test_send_time_check_refuses_a_stored_endpoint_outside_the_rules(listener: Listener) -> None:
    """A row written before the rules (or by hand) is not sent to, whatever the transport."""
    priv, pub = generate_vapid_keys()
    config = PushTenantConfig(tenant_id="t1", vapid_private_key=priv, vapid_public_key=pub)
    sub = new_browser_sub(f"http://127.0.0.1:{listener.port}/old").subscription
    async with httpx.AsyncClient() as client:
        r = await WebPushProvider(client).send(DeviceTarget("d", "webpush", subscription=sub), MSG, config)
    assert r.kind == "deactivate" and listener.connections == 0


async def test_webhook_to_the_metadata_service_or_loopback_is_refused(listener: Listener) -> None:
    policy = EgressPolicy(allow_http=True, resolver=resolver_to("169.254.169.254"))
    async with httpx.AsyncClient(transport=GuardedTransport(policy)) as client:
        provider = WebhookProvider(client, egress=policy)
        for url in ("http://metadata.example/latest/meta-data/", f"http://127.0.0.1:{listener.port}/hook",
                    f"http://user:pw@hooks.example:{listener.port}/hook"):
            config = PushTenantConfig(tenant_id="t1", webhook_url=url, webhook_secret="s")
            r = await provider.send(DeviceTarget("webhook", "webhook"), MSG, config)
            assert r.kind == "permanent_failure" and "refused" in r.reason, (url, r)
    assert listener.connections == 0


async def test_webhook_does_not_follow_redirects(listener: Listener) -> None:
    listener.status, listener.headers = 307, {"location": "http://169.254.169.254/latest/meta-data/"}
    policy = EgressPolicy(extra_hosts=("hooks.test",), allow_http=True, allow_loopback=True,
                          resolver=resolver_to("127.0.0.1"))
    async with httpx.AsyncClient(transport=GuardedTransport(policy)) as client:
        config = PushTenantConfig(tenant_id="t1", webhook_url=f"http://hooks.test:{listener.port}/h",
                                  webhook_secret="s")
        r = await WebhookProvider(client, egress=policy).send(DeviceTarget("webhook", "webhook"), MSG, config)
    assert r.kind == "permanent_failure" and listener.connections == 1


async def test_fcm_token_uri_must_be_googles(listener: Listener) -> None:
    config = PushTenantConfig(tenant_id="t1", fcm_service_account={
        "client_email": "svc@proj.iam.gserviceaccount.com", "private_key": "unused", "project_id": "proj",
        "token_uri": f"http://127.0.0.1:{listener.port}/token"})
    async with httpx.AsyncClient() as client:
        r = await FcmProvider(client).send(DeviceTarget("d", "fcm", token="t"), MSG, config)
    assert r.kind == "permanent_failure" and "token_uri" in r.reason
    assert listener.connections == 0


async def test_configure_refuses_private_webhooks_and_foreign_token_uris(db: Database) -> None:
    t = await make_tenant(db)
    engine = PushEngine(db, {}, MemoryPresence(), egress=EgressPolicy(resolver=resolver_to("10.1.2.3")))
    with pytest.raises(BadInput) as err:
        await engine.configure(t.id, webhook_url="https://hooks.internal/push", webhook_secret="s")
    assert err.value.field == "webhook_url"
    with pytest.raises(BadInput) as err:
        await engine.configure(t.id, fcm_service_account={"token_uri": "https://evil.example/token"})
    assert err.value.field == "fcm_service_account.token_uri"
    public = PushEngine(db, {}, MemoryPresence(), egress=EgressPolicy(resolver=public_resolver))
    cfg = await public.configure(t.id, webhook_url="https://hooks.acme.example/push", webhook_secret="s")
    assert cfg.webhook_url == "https://hooks.acme.example/push"


async def test_another_users_endpoint_does_not_move_the_device(db: Database) -> None:
    """Same tenant, user B registers user A's subscription: A keeps the device, B gets a row of
    its own, and B's answer looks like any new registration."""
    t = await make_tenant(db)
    engine = PushEngine(db, {}, MemoryPresence(), egress=EgressPolicy(resolver=public_resolver))
    sub = new_browser_sub("https://fcm.googleapis.com/fcm/send/alice").subscription
    a = await engine.register_device(t.id, "alice", "webpush", sub)
    b = await engine.register_device(t.id, "mallory", "webpush", sub)
    assert b.id != a.id and b.user_id == "mallory"
    assert (await engine.register_device(t.id, "alice", "webpush", sub)).id == a.id  # still idempotent
    async with db.session() as s:
        rows = {d.id: d for d in (await s.exec(select(Device))).all()}
    assert rows[a.id].user_id == "alice" and rows[a.id].active
    assert len(rows) == 2


def _no_dns(host: str, port: int) -> list[str]:
    raise OSError("no network")


async def test_a_known_push_host_that_does_not_resolve_now_is_accepted_but_a_webhook_is_not(
        db: Database) -> None:
    """Offline or DNS trouble: the push host is trusted and checked again on connect; a
    tenant's webhook host has no such trust."""
    t = await make_tenant(db)
    engine = PushEngine(db, {}, MemoryPresence(), egress=EgressPolicy(resolver=_no_dns))
    sub = new_browser_sub("https://fcm.googleapis.com/fcm/send/abc").subscription
    assert (await engine.register_device(t.id, "u1", "webpush", sub)).active
    with pytest.raises(BadInput) as err:
        await engine.configure(t.id, webhook_url="https://hooks.acme.example/push", webhook_secret="s")
    assert err.value.field == "webhook_url"


async def test_dns_trouble_at_send_time_is_a_retry_not_a_deactivation() -> None:
    priv, pub = generate_vapid_keys()
    config = PushTenantConfig(tenant_id="t1", vapid_private_key=priv, vapid_public_key=pub)
    policy = EgressPolicy(resolver=_no_dns)
    sub = new_browser_sub("https://fcm.googleapis.com/fcm/send/abc").subscription
    async with httpx.AsyncClient(transport=GuardedTransport(policy)) as client:
        r = await WebPushProvider(client, egress=policy).send(DeviceTarget("d", "webpush", subscription=sub), MSG,
                                                              config)
    assert r.kind == "retry" and "dns" in r.reason
