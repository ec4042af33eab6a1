"""REST surface of the push engine (see PROTOCOL.md). Handlers take ``db``, ``principal`` and
``push_engine`` by name from the app's dependencies, enforce roles themselves, and answer another
tenant's objects exactly like missing ones. The VAPID key route is public (no ``principal``)."""

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy import func
from sqlmodel import col, select

from server.accounts.auth import Principal
from server.core.db import Database
from server.core.models import Tenant, utcnow
from server.desk.notes import agent_push_id
from server.errors import BadInput, Forbidden, NotFound
from server.push.decision import CATEGORIES
from server.push.engine import PushEngine
from server.push.models import Device, Notification, Preferences, PushRule, aware
from server.push.quiet_hours import parse_hhmm
from server.push.rules import validate_rule

__all__ = ["push_route_handlers"]

# dependencies the app provides by name (Litestar 2.23+ wants them marked)
DbDep = NamedDependency[Database]
PrincipalDep = NamedDependency[Principal]
EngineDep = NamedDependency[PushEngine]


class EventsIn(msgspec.Struct):
    # events stay loosely typed so one bad event is reported by index, not the whole batch refused
    events: list[Any]


class DeviceIn(msgspec.Struct):
    platform: str
    subscription: dict[str, Any] | None = None
    token: str | None = None


class PreferencesIn(msgspec.Struct):
    timezone: str | None = None
    quiet_start: str | None = None
    quiet_end: str | None = None
    opted_out: list[str] = msgspec.field(default_factory=list)


class RuleIn(msgspec.Struct):
    name: str
    trigger_event: str
    template: dict[str, Any]
    conditions: dict[str, Any] | None = None
    wait_s: int | None = None
    cancel_on: list[str] = msgspec.field(default_factory=list)
    category: str = "marketing"
    priority: int = 5
    critical: bool = False
    variants: list[dict[str, Any]] | None = None
    rewrite: bool = False
    max_delay_s: int = 0
    per_rule_cap: dict[str, Any] | None = None
    collapse_key: str | None = None
    goal_event: str | None = None
    enabled: bool = True


def _admin(p: Principal) -> None:
    if p.role != "admin":
        raise Forbidden("admin only")


def _user(p: Principal) -> None:
    if p.role != "user":
        raise Forbidden("end users only")


def _recipient(p: Principal) -> str:
    """Whose devices these are: an end user's (their id) or an agent's (``agent:<id>``)."""
    if p.role == "agent":
        return agent_push_id(p.id)
    _user(p)
    return p.id


def _iso(dt: datetime | None) -> str | None:
    return aware(dt).isoformat() if dt is not None else None


def rule_json(r: PushRule) -> dict[str, Any]:
    return {
        "id": r.id, "name": r.name, "trigger_event": r.trigger_event, "conditions": r.conditions,
        "wait_s": r.wait_s, "cancel_on": r.cancel_on, "category": r.category, "priority": r.priority,
        "critical": r.critical, "template": r.template, "variants": r.variants, "rewrite": r.rewrite,
        "max_delay_s": r.max_delay_s, "per_rule_cap": r.per_rule_cap, "collapse_key": r.collapse_key,
        "goal_event": r.goal_event, "enabled": r.enabled, "created_at": _iso(r.created_at),
        "updated_at": _iso(r.updated_at),
    }


def notification_json(n: Notification) -> dict[str, Any]:
    return {
        "id": n.id, "user_id": n.user_id, "rule_id": n.rule_id, "event_id": n.event_id, "category": n.category,
        "title": n.title, "body": n.body, "url": n.url, "data": n.data, "decision": n.decision,
        "reasons": n.reasons, "send_at": _iso(n.send_at), "status": n.status, "channel": n.channel,
        "collapse_key": n.collapse_key, "variant": n.variant, "opened_at": _iso(n.opened_at),
        "converted_at": _iso(n.converted_at), "created_at": _iso(n.created_at),
    }


def _rule_body(data: RuleIn) -> dict[str, Any]:
    return {f: getattr(data, f) for f in data.__struct_fields__}


async def _get_rule(db: Database, tenant_id: str, rule_id: str) -> PushRule:
    async with db.session() as s:
        r = await s.get(PushRule, rule_id)
    if r is None or r.tenant_id != tenant_id:
        raise NotFound("rule not found")
    return r


class EventsController(Controller):
    path = "/v1/events"
    tags = ["push"]  # noqa: RUF012  (Litestar reads this class attribute)

    @post("", status_code=202)
    async def ingest(self, data: JSONBody[EventsIn], principal: PrincipalDep, push_engine: EngineDep) -> dict[str, Any]:
        _admin(principal)
        res = await push_engine.ingest_events(principal.tenant_id, data.events)
        return res.as_dict()


class RulesController(Controller):
    path = "/v1/push/rules"
    tags = ["push"]  # noqa: RUF012  (Litestar reads this class attribute)

    @post("", status_code=201)
    async def create(self, data: JSONBody[RuleIn], principal: PrincipalDep, db: DbDep,
                     push_engine: EngineDep) -> dict[str, Any]:
        _admin(principal)
        body = _rule_body(data)
        clean = await push_engine.renderer.run(
            lambda: validate_rule(body, push_engine.settings, push_engine.renderer))
        async with db.write() as s:
            n = (await s.exec(select(func.count()).select_from(PushRule).where(
                PushRule.tenant_id == principal.tenant_id))).one()
            if n >= push_engine.settings.max_rules_per_tenant:
                raise BadInput(f"at most {push_engine.settings.max_rules_per_tenant} rules per tenant")
            now = push_engine.now()
            rule = PushRule(tenant_id=principal.tenant_id, created_at=now, updated_at=now, **clean)
            s.add(rule)
        return rule_json(rule)

    @get("")
    async def list_rules(self, principal: PrincipalDep, db: DbDep) -> dict[str, Any]:
        _admin(principal)
        async with db.session() as s:
            rows = (await s.exec(select(PushRule).where(PushRule.tenant_id == principal.tenant_id)
                                 .order_by(col(PushRule.created_at)))).all()
        return {"rules": [rule_json(r) for r in rows]}

    @get("/{rule_id:str}")
    async def get_rule(self, rule_id: FromPath[str], principal: PrincipalDep, db: DbDep) -> dict[str, Any]:
        _admin(principal)
        return rule_json(await _get_rule(db, principal.tenant_id, rule_id))

    @patch("/{rule_id:str}")
    async def update_rule(self, rule_id: FromPath[str], data: JSONBody[dict[str, Any]], principal: PrincipalDep,
                          db: DbDep, push_engine: EngineDep) -> dict[str, Any]:
        _admin(principal)
        rule = await _get_rule(db, principal.tenant_id, rule_id)
        merged = {k: v for k, v in rule_json(rule).items() if k not in ("id", "created_at", "updated_at")}
        merged.update(data)
        clean = await push_engine.renderer.run(
            lambda: validate_rule(merged, push_engine.settings, push_engine.renderer))
        async with db.write() as s:
            row = await s.get(PushRule, rule_id)
            if row is None or row.tenant_id != principal.tenant_id:
                raise NotFound("rule not found")
            for k, v in clean.items():
                setattr(row, k, v)
            row.updated_at = push_engine.now()
            s.add(row)
        return rule_json(row)

    @delete("/{rule_id:str}", status_code=204)
    async def delete_rule(self, rule_id: FromPath[str], principal: PrincipalDep, db: DbDep) -> None:
        _admin(principal)
        async with db.write() as s:
            row = await s.get(PushRule, rule_id)
            if row is None or row.tenant_id != principal.tenant_id:
                raise NotFound("rule not found")
            await s.delete(row)

    @get("/{rule_id:str}/stats")
    async def stats(self, rule_id: FromPath[str], principal: PrincipalDep, db: DbDep,
                    push_engine: EngineDep) -> dict[str, Any]:
        _admin(principal)
        await _get_rule(db, principal.tenant_id, rule_id)
        return {"rule_id": rule_id, **await push_engine.rule_stats(principal.tenant_id, rule_id)}


class NotificationsController(Controller):
    tags = ["push"]  # noqa: RUF012  (Litestar reads this class attribute)

    @get("/v1/push/notifications")
    async def list_notifications(
        self, principal: PrincipalDep, db: DbDep,
        user_id: Annotated[str | None, QueryParameter(max_length=200)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> dict[str, Any]:
        _admin(principal)
        q = select(Notification).where(Notification.tenant_id == principal.tenant_id)
        if user_id is not None:
            q = q.where(Notification.user_id == user_id)
        async with db.session() as s:
            rows = (await s.exec(q.order_by(col(Notification.created_at).desc()).limit(limit))).all()
        return {"notifications": [notification_json(n) for n in rows]}

    @post("/v1/notifications/{notification_id:str}/opened", status_code=200)
    async def opened(self, notification_id: FromPath[str], principal: PrincipalDep, db: DbDep,
                     push_engine: EngineDep) -> dict[str, Any]:
        _user(principal)
        async with db.write() as s:
            n = await s.get(Notification, notification_id)
            if n is None or n.tenant_id != principal.tenant_id or n.user_id != principal.id:
                raise NotFound("notification not found")
            if n.opened_at is None:  # idempotent: the first open counts
                n.opened_at = push_engine.now()
                s.add(n)
        return {"id": n.id, "opened_at": _iso(n.opened_at)}


class DevicesController(Controller):
    path = "/v1/devices"
    tags = ["push"]  # noqa: RUF012  (Litestar reads this class attribute)

    @post("", status_code=201)
    async def register(self, data: JSONBody[DeviceIn], principal: PrincipalDep,
                       push_engine: EngineDep) -> dict[str, Any]:
        """An end user's device, or an agent's (it gets the agent's @mentions)."""
        dev = await push_engine.register_device(principal.tenant_id, _recipient(principal), data.platform,
                                                data.subscription, data.token)
        return {"device": {"id": dev.id, "platform": dev.platform, "active": dev.active,
                           "created_at": _iso(dev.created_at)}}

    @delete("/{device_id:str}", status_code=204)
    async def unregister(self, device_id: FromPath[str], principal: PrincipalDep, db: DbDep) -> None:
        recipient = _recipient(principal)
        async with db.write() as s:
            dev = await s.get(Device, device_id)
            if dev is None or dev.tenant_id != principal.tenant_id or dev.user_id != recipient:
                raise NotFound("device not found")
            await s.delete(dev)


class PreferencesController(Controller):
    path = "/v1/me/preferences"
    tags = ["push"]  # noqa: RUF012  (Litestar reads this class attribute)

    @get("")
    async def get_prefs(self, principal: PrincipalDep, db: DbDep) -> dict[str, Any]:
        _user(principal)
        async with db.session() as s:
            p = await s.get(Preferences, (principal.tenant_id, principal.id))
        if p is None:
            return {"timezone": None, "quiet_start": None, "quiet_end": None, "opted_out": []}
        return {"timezone": p.timezone, "quiet_start": p.quiet_start, "quiet_end": p.quiet_end,
                "opted_out": p.opted_out}

    @put("")
    async def put_prefs(self, data: JSONBody[PreferencesIn], principal: PrincipalDep, db: DbDep) -> dict[str, Any]:
        _user(principal)
        _validate_prefs(data)
        async with db.write() as s:
            p = await s.get(Preferences, (principal.tenant_id, principal.id))
            if p is None:
                p = Preferences(tenant_id=principal.tenant_id, user_id=principal.id)
            p.timezone, p.quiet_start, p.quiet_end = data.timezone, data.quiet_start, data.quiet_end
            p.opted_out = sorted(set(data.opted_out))
            p.updated_at = utcnow()
            s.add(p)
        return {"timezone": p.timezone, "quiet_start": p.quiet_start, "quiet_end": p.quiet_end,
                "opted_out": p.opted_out}


def _validate_prefs(data: JSONBody[PreferencesIn]) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if data.timezone is not None:
        try:
            ZoneInfo(data.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise BadInput("timezone: unknown IANA time zone", field="timezone") from exc
    if (data.quiet_start is None) != (data.quiet_end is None):
        raise BadInput("quiet_start: quiet_start and quiet_end go together", field="quiet_start")
    for f in ("quiet_start", "quiet_end"):
        v = getattr(data, f)
        if v is not None:
            try:
                parse_hhmm(v)
            except ValueError as exc:
                raise BadInput(f"{f}: must be HH:MM", field=f) from exc
    for i, c in enumerate(data.opted_out):
        if c not in (*CATEGORIES, "all"):
            raise BadInput(f"opted_out[{i}]: must be one of {[*CATEGORIES, 'all']}", field=f"opted_out[{i}]")


@get("/v1/push/vapid-public-key", tags=["push"], exclude_from_auth=True, opt={"public": True})
async def vapid_public_key(db: DbDep, push_engine: EngineDep,
                           widget_key: Annotated[str, QueryParameter(min_length=1, max_length=64)]) -> dict[str, Any]:
    async with db.session() as s:
        tenant = (await s.exec(select(Tenant).where(Tenant.widget_key == widget_key))).first()
    if tenant is None:
        raise NotFound("unknown widget key")
    cfg = await push_engine.tenant_config(tenant.id)
    return {"public_key": cfg.vapid_public_key}


push_route_handlers: list[Any] = [
    EventsController, RulesController, NotificationsController, DevicesController, PreferencesController,
    vapid_public_key,
]
