"""End to end: browse, add to cart, leave; 30 simulated minutes later the personalised reminder
arrives at a local Web Push endpoint (decrypted for real). A user with an open support
conversation gets nothing; one who is online gets it in-app; one who ordered is cancelled."""

from sqlmodel import select

from server.core.db import Database
from server.core.models import Conversation
from server.push.engine import PushEngine
from server.push.models import Notification, PendingWait, PushRule
from server.push.presence import MemoryPresence
from server.push.providers.webpush import WebPushProvider
from server.push.worker import PushWorker
from tests.push.conftest import SimClock, local_egress, local_push_settings, make_tenant, make_user, new_browser_sub
from tests.push.pushfakes import PushService

CART_RULE = {
    "name": "cart abandoned", "trigger_event": "cart.add",
    "conditions": {"all": [{"path": "event.properties.total", "op": "gt", "value": 10}]},
    "wait_s": 1800, "cancel_on": ["order.placed"], "category": "marketing",
    "template": {"title": "{{ user.name }}, your cart misses you",
                 "body": "{{ event.properties.item }} ({{ event.properties.total }} €) is still waiting",
                 "url": "/cart"},
    "collapse_key": "cart",
}


async def test_cart_reminder_end_to_end(db: Database, clock: SimClock) -> None:
    tenant = await make_tenant(db)
    tid = tenant.id
    for uid, name in (("alice", "Alice"), ("bob", "Bob"), ("carol", "Carol"), ("dave", "Dave")):
        await make_user(db, tid, uid, name=name, timezone="Europe/Paris")
    service = PushService()
    presence = MemoryPresence()
    async with service.client() as client:
        engine = PushEngine(db, {"webpush": WebPushProvider(client, local_push_settings(), clock=clock.ts)}, presence,
                            clock=clock, settings=local_push_settings(), egress=local_egress())
        worker = PushWorker(engine)
        subs = {}
        for uid in ("alice", "bob", "carol", "dave"):
            subs[uid] = service.register(new_browser_sub(f"https://push.local/{uid}"))
            await engine.register_device(tid, uid, "webpush", subs[uid].subscription)
        async with db.write() as s:
            s.add(PushRule(tenant_id=tid, **CART_RULE))
            s.add(Conversation(tenant_id=tid, user_id="bob", status="queued"))
        presence.connect(tid, "carol")

        events = []
        for i, uid in enumerate(("alice", "bob", "carol", "dave")):
            events += [
                {"event_id": f"{uid}-1", "user_id": uid, "name": "page.view", "properties": {"path": "/shoes"}},
                {"event_id": f"{uid}-2", "user_id": uid, "name": "cart.add",
                 "properties": {"item": "Red shoes", "total": 59 + i}},
            ]
        res = await engine.ingest_events(tid, events)
        assert (res.accepted, res.duplicates, res.errors) == (8, 0, {})
        clock.advance(minutes=5)
        await engine.ingest_events(tid, [{"event_id": "dave-3", "user_id": "dave", "name": "order.placed"}])

        clock.advance(minutes=10)
        await worker.drain()
        assert service.received == []  # still waiting

        clock.advance(minutes=16)
        await worker.drain()

        assert [m["endpoint"] for m in service.received] == ["https://push.local/alice"]
        msg = service.received[0]
        assert msg["title"] == "Alice, your cart misses you"
        assert msg["body"] == "Red shoes (59 €) is still waiting"
        assert msg["url"] == "/cart"
        assert service.headers[0]["urgency"] == "normal" and "topic" in service.headers[0]

        frames = presence.frames[(tid, "carol")]
        assert len(frames) == 1 and frames[0]["type"] == "notification"
        assert frames[0]["notification"]["title"] == "Carol, your cart misses you"

        async with db.session() as s:
            notes = {n.user_id: n for n in (await s.exec(select(Notification))).all()}
            waits = {w.user_id: w for w in (await s.exec(select(PendingWait))).all()}
        assert notes["alice"].status == "delivered" and notes["alice"].channel == "push"
        assert notes["carol"].status == "delivered" and notes["carol"].channel == "inapp"
        assert notes["bob"].decision == "suppress" and notes["bob"].suppress_reason == "support_open"
        assert "dave" not in notes and waits["dave"].status == "cancelled"
        assert any(r.startswith("wait:") for r in notes["alice"].reasons)
