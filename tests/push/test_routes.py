"""The REST surface over a minimal Litestar app (the real app registers the same handlers):
roles, tenant isolation (other tenant's objects are not_found), validation naming the field."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request
from litestar.di import Provide

from server.accounts.auth import Principal
from server.core.db import Database
from server.errors import exception_handlers
from server.push.engine import PushEngine
from server.push.presence import MemoryPresence
from server.push.routes import push_route_handlers
from server.push.worker import PushWorker
from tests.push.conftest import SimClock, local_egress, local_push_settings, make_tenant, make_user, new_browser_sub


@pytest.fixture
async def api(db: Database, clock: SimClock) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    t1 = await make_tenant(db, "Acme")
    t2 = await make_tenant(db, "Other")
    await make_user(db, t1.id, "u1", name="Uma")
    await make_user(db, t2.id, "u1", name="Other Uma")
    engine = PushEngine(db, {}, MemoryPresence(), clock=clock, settings=local_push_settings(), egress=local_egress())
    who: dict[str, Principal] = {"p": Principal(t1.id, "admin", "admin")}

    def principal(request: Request[Any, Any, Any]) -> Principal:
        name = request.headers.get("x-as", "admin1")
        tenant = t1.id if name.endswith("1") else t2.id
        role = name[:-1]
        return Principal(tenant, role, "u1" if role == "user" else role)  # type: ignore[arg-type]

    app = Litestar(
        route_handlers=push_route_handlers,
        dependencies={"db": Provide(lambda: db, sync_to_thread=False),
                      "push_engine": Provide(lambda: engine, sync_to_thread=False),
                      "principal": Provide(principal, sync_to_thread=False)},
        exception_handlers=exception_handlers(),
    )
    # ASGITransport runs the app on the test's own loop (the database pool lives there)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client, {"t1": t1, "t2": t2, "engine": engine, "who": who}


RULE = {"name": "welcome", "trigger_event": "signup", "category": "transactional",
        "template": {"title": "Hi {{ user.name }}", "body": "Welcome to {{ event.properties.plan }}"}}


async def test_rules_crud_and_isolation(api: Any) -> None:
    client, _ = api
    r = await client.post("/v1/push/rules", json=RULE)
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    assert (await client.get(f"/v1/push/rules/{rid}")).json()["name"] == "welcome"
    r = await client.patch(f"/v1/push/rules/{rid}", json={"enabled": False, "priority": 9})
    assert r.status_code == 200 and r.json()["enabled"] is False and r.json()["priority"] == 9
    # another tenant's admin, and a user of the same tenant
    assert (await client.get(f"/v1/push/rules/{rid}", headers={"x-as": "admin2"})).status_code == 404
    assert (await client.delete(f"/v1/push/rules/{rid}", headers={"x-as": "admin2"})).status_code == 404
    assert (await client.get("/v1/push/rules", headers={"x-as": "user1"})).status_code == 403
    assert (await client.get("/v1/push/rules", headers={"x-as": "admin2"})).json()["rules"] == []
    stats = (await client.get(f"/v1/push/rules/{rid}/stats")).json()
    assert stats["triggered"] == 0
    assert (await client.delete(f"/v1/push/rules/{rid}")).status_code == 204
    assert (await client.get(f"/v1/push/rules/{rid}")).status_code == 404


@pytest.mark.parametrize(("patch", "field"), [
    ({"conditions": {"all": [{"path": "event.x", "op": "like", "value": 1}]}}, "conditions.all[0].op"),
    ({"conditions": {"path": "os.system", "op": "eq", "value": 1}}, "conditions.path"),
    ({"template": {"title": "{{ user.name ", "body": "x"}}, "template.title"),
    ({"template": {"title": "x"}}, "template.body"),
    ({"category": "spam"}, "category"),
    ({"cancel_on": ["order.placed"]}, "cancel_on"),
    ({"per_rule_cap": {"count": 0, "window_s": 10}}, "per_rule_cap.count"),
    ({"variants": [{"name": "a", "title": "{% for %}"}]}, "variants[0].title"),
])
async def test_rule_validation_names_the_field(api: Any, patch: dict[str, Any], field: str) -> None:
    client, _ = api
    r = await client.post("/v1/push/rules", json={**RULE, **patch})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field


async def test_events_batch_with_per_event_errors(api: Any) -> None:
    client, _ = api
    await client.post("/v1/push/rules", json=RULE)
    events = [
        {"event_id": "e1", "user_id": "u1", "name": "signup", "properties": {"plan": "pro"}},
        {"event_id": "e2", "user_id": "ghost", "name": "signup"},
        {"event_id": "e3", "user_id": "u1"},
        {"event_id": "e4", "user_id": "u1", "name": "big", "properties": {"x": "y" * 20000}},
        {"event_id": "e1", "user_id": "u1", "name": "signup"},
        "not an object",
        {"event_id": "e5", "user_id": "u1", "name": "page.view"},
    ]
    r = await client.post("/v1/events", json={"events": events})
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 1, 4)
    errs = {e["index"]: e for e in body["errors"]}
    assert errs[1]["field"] == "user_id" and errs[1]["code"] == "not_found"
    assert errs[2]["field"] == "name"
    assert errs[3]["field"] == "properties" and errs[3]["code"] == "too_long"
    assert 5 in errs
    again = (await client.post("/v1/events", json={"events": events[:1]})).json()
    assert (again["accepted"], again["duplicates"]) == (0, 1)
    assert (await client.post("/v1/events", json={"events": events}, headers={"x-as": "user1"})).status_code == 403
    r = await client.post("/v1/events", json={"events": [{}] * 1001})
    assert r.status_code == 413
    notes = (await client.get("/v1/push/notifications", params={"user_id": "u1"})).json()["notifications"]
    assert len(notes) == 1 and notes[0]["title"] == "Hi Uma" and notes[0]["body"] == "Welcome to pro"
    assert notes[0]["decision"] == "send_now" and notes[0]["reasons"]
    # other tenant sees nothing of it
    assert (await client.get("/v1/push/notifications", headers={"x-as": "admin2"})).json()["notifications"] == []


async def test_devices_preferences_opened_and_vapid(api: Any, clock: SimClock) -> None:
    client, ctx = api
    sub = new_browser_sub("https://push.local/u1").subscription
    r = await client.post("/v1/devices", json={"platform": "webpush", "subscription": sub},
                          headers={"x-as": "user1"})
    assert r.status_code == 201, r.text
    dev_id = r.json()["device"]["id"]
    again = await client.post("/v1/devices", json={"platform": "webpush", "subscription": sub},
                              headers={"x-as": "user1"})
    assert again.json()["device"]["id"] == dev_id  # idempotent
    bad = await client.post("/v1/devices", json={"platform": "webpush", "subscription": {"endpoint": "x"}},
                            headers={"x-as": "user1"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "subscription.endpoint"
    bad = await client.post("/v1/devices", json={"platform": "apns", "token": "zz"}, headers={"x-as": "user1"})
    assert bad.json()["error"]["field"] == "token"
    assert (await client.delete(f"/v1/devices/{dev_id}", headers={"x-as": "user2"})).status_code == 404
    assert (await client.delete(f"/v1/devices/{dev_id}", headers={"x-as": "user1"})).status_code == 204

    prefs = {"timezone": "Europe/London", "quiet_start": "22:00", "quiet_end": "07:30", "opted_out": ["marketing"]}
    r = await client.put("/v1/me/preferences", json=prefs, headers={"x-as": "user1"})
    assert r.status_code == 200 and r.json() == prefs
    assert (await client.get("/v1/me/preferences", headers={"x-as": "user1"})).json() == prefs
    assert (await client.get("/v1/me/preferences", headers={"x-as": "user2"})).json()["opted_out"] == []
    for badp, field in (({"timezone": "Mars/Base"}, "timezone"), ({"quiet_start": "25:00", "quiet_end": "07:00"},
                        "quiet_start"), ({"opted_out": ["spam"]}, "opted_out[0]")):
        r = await client.put("/v1/me/preferences", json=badp, headers={"x-as": "user1"})
        assert r.status_code == 422 and r.json()["error"]["field"] == field

    await client.post("/v1/push/rules", json=RULE)
    await client.post("/v1/events", json={"events": [{"event_id": "s1", "user_id": "u1", "name": "signup",
                                                      "properties": {"plan": "pro"}}]})
    nid = (await client.get("/v1/push/notifications")).json()["notifications"][0]["id"]
    assert (await client.post(f"/v1/notifications/{nid}/opened", headers={"x-as": "user2"})).status_code == 404
    r = await client.post(f"/v1/notifications/{nid}/opened", headers={"x-as": "user1"})
    assert r.status_code == 200 and r.json()["opened_at"]

    key = (await client.get("/v1/push/vapid-public-key", params={"widget_key": ctx["t1"].widget_key})).json()
    key2 = (await client.get("/v1/push/vapid-public-key", params={"widget_key": ctx["t1"].widget_key})).json()
    assert key == key2 and len(key["public_key"]) == 87  # 65 bytes, base64url
    assert (await client.get("/v1/push/vapid-public-key", params={"widget_key": "nope"})).status_code == 404
    await PushWorker(ctx["engine"]).drain()
