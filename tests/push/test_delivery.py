"""The worker against a local Web Push service: retries with backoff and jitter then dead-letter,
Retry-After, deactivation, payload too large, dedupe of 500 events delivered 3 times, a worker
killed mid-send 50 times, and chat-derived notifications."""

import asyncio
import contextlib
import random
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from server.core.db import Database
from server.core.models import Conversation, OutboxRow, Participant
from server.push.engine import PushEngine
from server.push.models import Delivery, Device, Notification, Preferences, PushRule, PushTenantConfig
from server.push.presence import MemoryPresence
from server.push.providers import DeliveryResult, DeviceTarget, PushMessage, WebPushProvider
from server.push.worker import PushWorker
from tests.push.conftest import SimClock, local_egress, local_push_settings, make_tenant, make_user, new_browser_sub
from tests.push.pushfakes import PushService

SHIPPED = {"name": "shipped", "trigger_event": "order.shipped", "category": "transactional",
           "template": {"title": "Order {{ event.properties.order }} shipped", "body": "On its way, {{ user.name }}"}}


async def _setup(db: Database, clock: SimClock, service: PushService, client: httpx.AsyncClient,
                 users: int = 1, devices: int = 1, **settings: Any) -> tuple[str, PushEngine]:
    t = await make_tenant(db)
    ps = local_push_settings(**settings)
    engine = PushEngine(db, {"webpush": WebPushProvider(client, ps, clock=clock.ts)}, MemoryPresence(), clock=clock,
                        settings=ps, rng=random.Random(7), egress=local_egress(ps))
    for u in range(users):
        await make_user(db, t.id, f"u{u}", name=f"User {u}")
        for d in range(devices):
            sub = service.register(new_browser_sub(f"https://push.local/u{u}/d{d}"))
            await engine.register_device(t.id, f"u{u}", "webpush", sub.subscription)
    async with db.write() as s:
        s.add(PushRule(tenant_id=t.id, **SHIPPED))
    return t.id, engine


async def _outbox(db: Database) -> list[OutboxRow]:
    async with db.session() as s:
        return list((await s.exec(select(OutboxRow).order_by(col(OutboxRow.id)))).all())


async def test_5xx_backs_off_with_jitter_then_dead_letters(db: Database, clock: SimClock) -> None:
    service = PushService(answer=lambda r: httpx.Response(503))
    async with service.client() as client:
        tid, engine = await _setup(db, clock, service, client, max_attempts=5, backoff_base_s=10)
        await engine.ingest_events(tid, [{"event_id": "e", "user_id": "u0", "name": "order.shipped",
                                          "properties": {"order": 1}}])
        worker = PushWorker(engine, rng=random.Random(1))
        delays = []
        for _ in range(10):
            before = clock()
            await worker.drain()
            row = next(r for r in await _outbox(db) if r.payload["kind"] == "deliver")
            if row.done:
                break
            delays.append((row.available_at.replace(tzinfo=None) - before.replace(tzinfo=None)).total_seconds())
            clock.t = before + (row.available_at.replace(tzinfo=None) - before.replace(tzinfo=None))
        assert len(delays) == 4  # attempts 1..4 retried, the 5th dead-letters
        for i, d in enumerate(delays, start=1):
            cap = 10 * 2**i
            assert cap / 2 <= d <= cap  # exponential, with jitter
        assert row.done and row.last_error is not None and row.last_error.startswith("dead_letter")
        async with db.session() as s:
            n = (await s.exec(select(Notification))).one()
            d = (await s.exec(select(Delivery))).one()
        assert n.status == "failed" and d.status == "dead" and d.attempts == 5


async def test_429_waits_for_retry_after_then_delivers(db: Database, clock: SimClock) -> None:
    calls = Counter[str]()

    def answer(req: httpx.Request) -> httpx.Response | None:
        calls["n"] += 1
        return httpx.Response(429, headers={"Retry-After": "120"}) if calls["n"] == 1 else None

    service = PushService(answer=answer)
    async with service.client() as client:
        tid, engine = await _setup(db, clock, service, client)
        await engine.ingest_events(tid, [{"event_id": "e", "user_id": "u0", "name": "order.shipped"}])
        worker = PushWorker(engine)
        await worker.drain()
        row = next(r for r in await _outbox(db) if r.payload["kind"] == "deliver")
        assert not row.done
        clock.advance(seconds=119)
        await worker.drain()
        assert service.received == []
        clock.advance(seconds=2)
        await worker.drain()
    assert len(service.received) == 1 and service.received[0]["title"] == "Order shipped"  # fallback


async def test_gone_deactivates_and_too_large_is_not_retried(db: Database, clock: SimClock) -> None:
    def answer(req: httpx.Request) -> httpx.Response | None:
        if req.url.path.endswith("/d0"):
            return httpx.Response(410)
        if req.url.path.endswith("/d1"):
            return httpx.Response(413)
        return None

    service = PushService(answer=answer)
    async with service.client() as client:
        tid, engine = await _setup(db, clock, service, client, devices=3)
        await engine.ingest_events(tid, [{"event_id": "e", "user_id": "u0", "name": "order.shipped"}])
        await PushWorker(engine).drain()
        clock.advance(hours=2)
        await PushWorker(engine).drain()
    async with db.session() as s:
        devs = {d.subscription["endpoint"].rsplit("/", 1)[1]: d for d in (await s.exec(select(Device))).all()
                if d.subscription}
        dels = {d.device_id: d for d in (await s.exec(select(Delivery))).all()}
        n = (await s.exec(select(Notification))).one()
    assert not devs["d0"].active and devs["d1"].active and devs["d2"].active
    assert dels[devs["d0"].id].status == "deactivated"
    assert dels[devs["d1"].id].status == "failed" and dels[devs["d1"].id].attempts == 1
    assert dels[devs["d2"].id].status == "delivered" and n.status == "delivered"
    assert len(service.received) == 1


async def test_500_events_delivered_3_times_make_one_notification_per_event_and_device(
    db: Database, clock: SimClock,
) -> None:
    service = PushService(verify_vapid=False)
    async with service.client() as client:
        tid, engine = await _setup(db, clock, service, client, users=50, devices=1)
        events = [{"event_id": f"e{i}", "user_id": f"u{i % 50}", "name": "order.shipped",
                   "properties": {"order": i}} for i in range(500)]
        rng = random.Random(3)
        copies = [events[:] for _ in range(3)]
        for c in copies:
            rng.shuffle(c)

        async def deliver_copy(c: list[dict[str, Any]]) -> list[Any]:
            return [await engine.ingest_events(tid, c[i:i + 100]) for i in range(0, 500, 100)]

        # the three copies race each other (a client retrying while the first attempt is in flight)
        results = [r for rs in await asyncio.gather(*(deliver_copy(c) for c in copies)) for r in rs]
        assert sum(r.accepted for r in results) == 500
        assert sum(r.duplicates for r in results) == 1000
        await PushWorker(engine).drain()
    async with db.session() as s:
        notes = (await s.exec(select(Notification))).all()
        dels = (await s.exec(select(Delivery))).all()
    assert len(notes) == 500 and {n.event_id for n in notes} == {e["event_id"] for e in events}
    assert len(dels) == 500 and all(d.status == "delivered" for d in dels)
    got = Counter((m["id"], m["endpoint"]) for m in service.received)
    assert len(got) == 500 and set(got.values()) == {1}


class CrashingProvider:
    """Wraps the real provider; at random points the 'process dies': it hangs and the test
    cancels the worker task, as a kill would, before or after the real send."""

    platform = "webpush"

    def __init__(self, inner: WebPushProvider, rng: random.Random) -> None:
        self.inner, self.rng = inner, rng
        self.armed = True
        self.crashed = asyncio.Event()

    async def _die(self) -> None:
        self.crashed.set()
        await asyncio.Event().wait()

    async def send(self, target: DeviceTarget, message: PushMessage, config: PushTenantConfig) -> DeliveryResult:
        if self.armed and self.rng.random() < 0.25:
            await self._die()
        r = await self.inner.send(target, message, config)
        if self.armed and self.rng.random() < 0.25:
            await self._die()  # sent, but the result never recorded
        return r


async def test_worker_killed_mid_send_50_times_loses_nothing(db: Database, clock: SimClock) -> None:
    service = PushService(verify_vapid=False)
    async with service.client() as client:
        tid, engine = await _setup(db, clock, service, client, users=10, devices=2, worker_concurrency=1,
                                   worker_batch=5)
        crashing = CrashingProvider(engine.providers["webpush"], random.Random(11))  # type: ignore[arg-type]
        engine.providers["webpush"] = crashing
        await engine.ingest_events(tid, [{"event_id": f"e{i}", "user_id": f"u{i % 10}", "name": "order.shipped"}
                                         for i in range(80)])
        kills = 0
        for _ in range(2000):
            if kills >= 50:
                break
            crashing.crashed.clear()
            task = asyncio.create_task(PushWorker(engine).run_once())  # a fresh worker process
            crash = asyncio.create_task(crashing.crashed.wait())
            await asyncio.wait({task, crash}, return_when=asyncio.FIRST_COMPLETED)
            if crashing.crashed.is_set() and not task.done():
                task.cancel()
                kills += 1
                clock.advance(seconds=engine.settings.worker_lease_s + 1)  # the dead worker's lease runs out
            crash.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(asyncio.CancelledError):
                await crash
        assert kills == 50
        crashing.armed = False
        clock.advance(seconds=engine.settings.worker_lease_s + 1)
        for _ in range(20):
            await PushWorker(engine).drain()
            clock.advance(hours=2)
    async with db.session() as s:
        notes = (await s.exec(select(Notification))).all()
        dels = (await s.exec(select(Delivery))).all()
        pending = [r for r in (await s.exec(select(OutboxRow))).all() if not r.done]
    assert len(notes) == 80 and all(n.status == "delivered" for n in notes)
    assert len(dels) == 160 and all(d.status == "delivered" for d in dels)
    assert pending == []
    got = Counter((m["id"], m["endpoint"]) for m in service.received)
    assert len(got) == 160  # every (notification, device) arrived at least once: 0 lost


async def _chat_setup(db: Database, clock: SimClock, service: PushService, client: httpx.AsyncClient,
                      ) -> tuple[str, str, PushEngine, MemoryPresence]:
    t = await make_tenant(db, "Acme")
    presence = MemoryPresence()
    engine = PushEngine(db, {"webpush": WebPushProvider(client, local_push_settings(), clock=clock.ts)}, presence,
                        clock=clock, settings=local_push_settings(), egress=local_egress())
    await make_user(db, t.id, "u1", name="Uma", timezone="Europe/Paris")
    sub = service.register(new_browser_sub("https://push.local/u1"))
    await engine.register_device(t.id, "u1", "webpush", sub.subscription)
    conv = Conversation(tenant_id=t.id, user_id="u1", status="assigned")
    async with db.write() as s:
        s.add(conv)
    async with db.write() as s:
        s.add(Participant(conversation_id=conv.id, kind="user", participant_id="u1", tenant_id=t.id, read_seq=1))
    return t.id, conv.id, engine, presence


def _reply(tid: str, conv: str, seq: int, text: str, clock: SimClock) -> OutboxRow:
    from datetime import timedelta
    return OutboxRow(tenant_id=tid, topic="push", available_at=clock() + timedelta(seconds=60), payload={
        "kind": "chat.reply", "conversation_id": conv, "message_id": f"m{seq}", "user_id": "u1",
        "sender_name": "Alice", "tenant_name": "Acme", "text": text, "seq": seq})


async def test_chat_reply_push_collapsed_per_conversation(db: Database, clock: SimClock) -> None:
    service = PushService()
    async with service.client() as client:
        tid, conv, engine, presence = await _chat_setup(db, clock, service, client)
        worker = PushWorker(engine)
        async with db.write() as s:
            s.add(_reply(tid, conv, 2, "Your refund is on its way.", clock))
            s.add(_reply(tid, conv, 3, "Anything else   I can do?", clock))
        await worker.drain()
        assert service.received == []  # the delay has not passed
        clock.advance(seconds=61)
        await worker.drain()
        assert len(service.received) == 1  # collapsed: only the latest reply
        m = service.received[0]
        assert m["title"] == "Alice from Acme replied" and m["body"] == "Anything else I can do?"
        assert m["url"] == f"/?conversation={conv}"
        # read up to the seq -> nothing; online -> nothing (they see it in the chat)
        async with db.write() as s:
            p = (await s.exec(select(Participant))).one()
            p.read_seq = 4
            s.add(p)
            s.add(_reply(tid, conv, 4, "read already", clock))
        presence.connect(tid, "u1")
        async with db.write() as s:
            s.add(_reply(tid, conv, 5, "while online", clock))
        clock.advance(seconds=61)
        await worker.drain()
        assert len(service.received) == 1
        assert await engine.handle_chat_event(tid, _reply(tid, conv, 4, "x", clock).payload) == "read"
        assert await engine.handle_chat_event(tid, _reply(tid, conv, 5, "x", clock).payload) == "online"
    async with db.session() as s:
        notes = (await s.exec(select(Notification).order_by(col(Notification.created_at)))).all()
    by_seq = {n.data["seq"]: n for n in notes}
    assert (by_seq[2].status, by_seq[3].status) == ("collapsed", "delivered")
    assert by_seq[3].category == "support" and by_seq[3].collapse_key == f"conv:{conv}"


async def test_chat_reply_respects_quiet_hours(db: Database, clock: SimClock) -> None:
    from datetime import UTC, datetime
    service = PushService()
    clock.t = datetime(2025, 7, 1, 21, 30, tzinfo=UTC)  # 23:30 in Paris (CEST)
    async with service.client() as client:
        tid, conv, engine, _ = await _chat_setup(db, clock, service, client)
        async with db.write() as s:
            s.add(Preferences(tenant_id=tid, user_id="u1", quiet_start="22:00", quiet_end="07:00"))
            s.add(_reply(tid, conv, 2, "Done!", clock))
        clock.advance(seconds=61)
        worker = PushWorker(engine)
        await worker.drain()
        assert service.received == []
        async with db.session() as s:
            n = (await s.exec(select(Notification))).one()
        assert n.decision == "send_at" and n.send_at is not None
        assert n.send_at.replace(tzinfo=UTC) == datetime(2025, 7, 2, 5, 0, tzinfo=UTC)  # 07:00 Paris
        clock.t = datetime(2025, 7, 2, 5, 0, 1, tzinfo=UTC)
        await worker.drain()
    assert len(service.received) == 1


async def test_a_redelivered_chat_reply_is_decided_a_duplicate_by_the_engine(
        db: Database, clock: SimClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decision's ``duplicate`` rule runs on the real path: the engine looks the dedupe key
    up, the decision suppresses the replay, and nothing new is stored or sent."""
    import server.push.engine as engine_module

    decisions: list[Any] = []
    real_decide = engine_module.decide

    def spy(candidate: Any, ctx: Any, now: Any) -> Any:
        decisions.append(real_decide(candidate, ctx, now))
        return decisions[-1]

    monkeypatch.setattr(engine_module, "decide", spy)
    service = PushService()
    async with service.client() as client:
        tid, conv, engine, _presence = await _chat_setup(db, clock, service, client)
        payload = _reply(tid, conv, 2, "Your refund is on its way.", clock).payload
        assert await engine.handle_chat_event(tid, payload) == "notified"
        assert await engine.handle_chat_event(tid, payload) == "duplicate"
    assert [d.suppress_reason for d in decisions] == [None, "duplicate"]
    async with db.session() as s:
        assert len((await s.exec(select(Notification))).all()) == 1
