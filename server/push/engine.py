"""The push engine: behaviour events in, decided notifications out. Ingestion, rule matching,
waits with cancel-on, the decision and the outbox rows happen in ONE transaction, so a crash
either keeps all of it or none; delivery is the worker's job (``server.push.worker``).

Outbox payloads (topic ``push``) this module writes or reads:
    {"kind": "deliver",   "notification_id"}                      a decided notification
    {"kind": "rule.wait", "wait_id"}                              a rule's wait has run out
    {"kind": "chat.reply", "conversation_id", "message_id", "user_id", "sender_name",
     "tenant_name", "text", "seq"}                                written by the chat service
    {"kind": "chat.event", "event_id", "user_id", "name", "properties"?}   chat activity as an event
    {"kind": "desk.mention", "agent_id", "conversation_id", "message_id", "seq", "author_name",
     "text"}                                                      an agent @mentioned in a note
"""

import hashlib
import json
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from server.core.db import Database
from server.core.models import Conversation, Message, OutboxRow, Participant, Status, User, new_id, utcnow
from server.core.settings import PushSettings
from server.desk.notes import agent_push_id
from server.errors import BadInput, TooLong
from server.push.conditions import evaluate
from server.push.decision import Candidate, Decision, DecisionContext, PastSend, Prefs, SupportState, decide
from server.push.egress import EgressPolicy, EgressRefused
from server.push.models import Device, Event, Notification, PendingWait, Preferences, PushRule, PushTenantConfig, aware
from server.push.presence import Presence
from server.push.providers.base import Provider
from server.push.providers.webpush import b64url_decode, generate_vapid_keys
from server.push.quiet_hours import zone
from server.push.template_sandbox import TemplateLimits
from server.push.templates import Copywriter, Rendered, TemplateRenderer

__all__ = ["IngestResult", "PushEngine", "user_context"]

log = logging.getLogger(__name__)
TOPIC = "push"
_LIVE = ("scheduled", "delivered", "failed", "no_target")  # statuses that consumed budget


@dataclass(slots=True)
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    errors: dict[int, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": len(self.errors),
            "errors": [{"index": i, **e} for i, e in sorted(self.errors.items())],
        }


@dataclass(slots=True)
class _Parsed:
    index: int
    event_id: str
    user_id: str
    name: str
    properties: dict[str, Any]
    occurred_at: datetime


@dataclass(slots=True)
class _UserCtx:
    """Per-user decision context, loaded once per transaction and updated as we decide."""

    prefs: Prefs
    recent: list[PastSend]
    support: SupportState
    hours: list[int] | None = None


@dataclass(slots=True)
class _Spec:
    user_id: str
    category: str
    title: str
    body: str
    url: str | None
    dedupe_key: str
    data: dict[str, Any] = field(default_factory=dict)
    rule_id: str | None = None
    event_id: str | None = None
    critical: bool = False
    priority: int = 5
    max_delay_s: int = 0
    rule_cap: tuple[int, int] | None = None
    collapse_key: str | None = None
    not_before: datetime | None = None
    variant: str | None = None
    rewrite: bool = False
    notes: list[str] = field(default_factory=list)


def user_context(user: User) -> dict[str, Any]:
    """What templates and conditions see of a user: profile fields and ``attributes``, no ids of ours."""
    return {"id": user.external_id, "name": user.name, "email": user.email, "locale": user.locale,
            "timezone": user.timezone, "attributes": dict(user.attributes or {})}


def _event_context(name: str, event_id: str, properties: Mapping[str, Any], occurred_at: datetime) -> dict[str, Any]:
    return {"id": event_id, "name": name, "properties": dict(properties), "occurred_at": occurred_at.isoformat()}


class PushEngine:
    def __init__(
        self,
        db: Database,
        providers: Mapping[str, Provider],
        presence: Presence,
        clock: Callable[[], datetime] = utcnow,
        settings: PushSettings | None = None,
        copywriter: Copywriter | None = None,
        rng: random.Random | None = None,
        egress: EgressPolicy | None = None,
    ) -> None:
        self.db = db
        self.providers = dict(providers)
        self.presence = presence
        self.clock = clock
        self.settings = settings or PushSettings()
        self.copywriter = copywriter
        self.rng = rng or random.Random()
        s = self.settings
        self.egress = egress or EgressPolicy.from_settings(s)
        self._conversion_window = timedelta(seconds=s.conversion_window_s)
        self._cfg_cache: dict[str, tuple[PushTenantConfig, datetime]] = {}
        self.renderer = TemplateRenderer(
            max_title=s.max_title_chars, max_body=s.max_body_chars, max_url=s.max_url_chars,
            max_source_chars=s.template_max_source_chars, threads=s.template_threads,
            batch_budget_s=s.template_batch_budget_s,
            limits=TemplateLimits(max_value_chars=s.template_max_value_chars,
                                  max_output_chars=s.template_max_output_chars,
                                  max_iterations=s.template_max_iterations, max_range=s.template_max_range,
                                  max_int_bits=s.template_max_int_bits, budget_s=s.template_budget_s))

    def now(self) -> datetime:
        return aware(self.clock())

    # ------------------------------------------------------------------ ingestion

    def parse_event(self, raw: Any, index: int, now: datetime) -> _Parsed:
        s = self.settings
        if not isinstance(raw, Mapping):
            raise BadInput("event: must be an object", field="event")
        for key in ("event_id", "user_id", "name"):
            v = raw.get(key)
            if v is None:
                raise BadInput(f"{key}: is required", field=key)
            limit = s.max_name_chars if key == "name" else s.max_id_chars
            if not isinstance(v, str) or not v.strip() or len(v) > limit or "\x00" in v:
                raise BadInput(f"{key}: must be a non-empty string of at most {limit} characters", field=key)
        props = raw.get("properties")
        if props is None:
            props = {}
        if not isinstance(props, dict):
            raise BadInput("properties: must be an object", field="properties")
        try:
            size = len(json.dumps(props, separators=(",", ":"), allow_nan=False).encode())
        except (ValueError, TypeError) as exc:
            raise BadInput("properties: must be plain JSON (no NaN)", field="properties") from exc
        if size > s.max_properties_bytes:
            raise TooLong(f"properties: {size} bytes, at most {s.max_properties_bytes}", field="properties")
        occurred = _parse_time(raw.get("occurred_at"), now)
        if occurred > now + timedelta(seconds=s.max_clock_skew_s):
            occurred = now  # a client clock ahead of ours must not schedule the future
        return _Parsed(index, raw["event_id"], raw["user_id"], raw["name"], props, occurred)

    async def ingest_events(self, tenant_id: str, events: Sequence[Any]) -> IngestResult:
        """Store new events (dedupe by ``event_id``), cancel waits, record conversions and turn
        matching rules into notifications, all in one transaction. Bad events are reported by index
        and the rest are kept."""
        if len(events) > self.settings.max_batch:
            raise TooLong(f"events: at most {self.settings.max_batch} per batch", field="events")
        now = self.now()
        result = IngestResult()
        parsed: list[_Parsed] = []
        seen: set[str] = set()
        for i, raw in enumerate(events):
            try:
                ev = self.parse_event(raw, i, now)
            except BadInput as exc:
                result.errors[i] = {"code": exc.code, "field": exc.field, "detail": exc.detail}
                continue
            if ev.event_id in seen:
                result.duplicates += 1
                continue
            seen.add(ev.event_id)
            parsed.append(ev)
        if not parsed:
            return result
        async with self.db.write() as s:
            users = await self._users(s, tenant_id, {p.user_id for p in parsed})
            known = []
            for p in parsed:
                if p.user_id in users:
                    known.append(p)
                else:
                    result.errors[p.index] = {"code": "not_found", "field": "user_id",
                                              "detail": f"user_id: unknown user {p.user_id!r}"}
            inserted = await self._insert_events(s, tenant_id, known, now)
            fresh = [p for p in known if p.event_id in inserted]
            result.duplicates += len(known) - len(fresh)
            result.accepted = len(fresh)
            if fresh:
                await self._evaluate(s, tenant_id, fresh, users, now)
        return result

    async def _users(self, s: AsyncSession, tenant_id: str, ids: set[str]) -> dict[str, User]:
        out: dict[str, User] = {}
        idl = list(ids)
        for i in range(0, len(idl), 500):
            q = select(User).where(User.tenant_id == tenant_id, col(User.external_id).in_(idl[i:i + 500]))
            for u in (await s.exec(q)).all():
                out[u.external_id] = u
        return out

    def _insert(self, model: Any) -> Any:
        return sqlite_insert(model) if self.db.is_sqlite else pg_insert(model)

    async def _insert_events(self, s: AsyncSession, tenant_id: str, evs: list[_Parsed], now: datetime) -> set[str]:
        if not evs:
            return set()
        # a fixed order: concurrent batches with overlapping ids must not deadlock on PostgreSQL
        evs = sorted(evs, key=lambda p: p.event_id)
        rows = [{"tenant_id": tenant_id, "event_id": p.event_id, "user_id": p.user_id, "name": p.name,
                 "properties": p.properties, "occurred_at": p.occurred_at, "received_at": now} for p in evs]
        got: set[str] = set()
        for i in range(0, len(rows), 500):  # stays under both databases' bind-parameter limits
            stmt = (self._insert(Event).values(rows[i:i + 500])
                    .on_conflict_do_nothing(index_elements=["tenant_id", "event_id"])
                    .returning(col(Event.event_id)))
            got.update(r[0] for r in (await s.exec(stmt)).all())
        return got

    async def _evaluate(self, s: AsyncSession, tenant_id: str, evs: list[_Parsed], users: dict[str, User],
                        now: datetime) -> None:
        names = {p.name for p in evs}
        rules = (await s.exec(select(PushRule).where(
            PushRule.tenant_id == tenant_id, col(PushRule.enabled).is_(True),
            or_(col(PushRule.trigger_event).in_(names), col(PushRule.goal_event).in_(names))))).all()
        by_trigger: dict[str, list[PushRule]] = {}
        by_goal: dict[str, list[PushRule]] = {}
        for r in sorted(rules, key=lambda r: (-r.priority, r.created_at, r.id)):
            by_trigger.setdefault(r.trigger_event, []).append(r)
            if r.goal_event:
                by_goal.setdefault(r.goal_event, []).append(r)
        user_ids = {p.user_id for p in evs}
        waits = (await s.exec(select(PendingWait).where(
            PendingWait.tenant_id == tenant_id, PendingWait.status == "pending",
            col(PendingWait.user_id).in_(list(user_ids))))).all() if len(user_ids) <= 1000 else []
        open_waits: dict[str, list[PendingWait]] = {}
        for w in waits:
            open_waits.setdefault(w.user_id, []).append(w)
        ctxs: dict[str, _UserCtx] = {}
        ordered = sorted(evs, key=lambda p: (p.occurred_at, p.index))
        # every text this batch needs, rendered in one trip to the template threads (not one per
        # notification while the transaction holds its locks)
        jobs: list[tuple[PushRule, User, dict[str, Any], str]] = []
        datas: dict[str, dict[str, Any]] = {}
        for p in ordered:
            if p.name not in by_trigger:
                continue
            data = datas[p.event_id] = {"event": _event_context(p.name, p.event_id, p.properties, p.occurred_at),
                                        "user": user_context(users[p.user_id])}
            jobs.extend((r, users[p.user_id], data, p.event_id) for r in by_trigger[p.name]
                        if not r.wait_s and evaluate(r.conditions, data))
        texts = await self.renderer.render_many_async(
            [(r.template, data, r.variants, u.external_id, r.id) for r, u, data, _ in jobs])
        rendered = {(r.id, event_id): t for (r, _, _, event_id), t in zip(jobs, texts, strict=True)}
        for p in ordered:
            for w in open_waits.get(p.user_id, []):
                if w.status == "pending" and p.name in w.cancel_on and p.occurred_at >= aware(w.trigger_at):
                    w.status, w.cancelled_by = "cancelled", p.event_id
                    s.add(w)
            for r in by_goal.get(p.name, []):
                await s.exec(update(Notification).where(
                    col(Notification.tenant_id) == tenant_id, col(Notification.user_id) == p.user_id,
                    col(Notification.rule_id) == r.id, col(Notification.converted_at).is_(None),
                    col(Notification.status) == "delivered",
                    col(Notification.created_at) >= p.occurred_at - self._conversion_window,
                ).values(converted_at=now))
            matching = by_trigger.get(p.name)
            if not matching:
                continue
            user = users[p.user_id]
            data = datas[p.event_id]
            for r in matching:
                if not evaluate(r.conditions, data):
                    continue
                if r.wait_s:
                    w = PendingWait(tenant_id=tenant_id, rule_id=r.id, user_id=p.user_id, event_id=p.event_id,
                                    cancel_on=list(r.cancel_on), trigger_at=p.occurred_at,
                                    due_at=max(now, p.occurred_at + timedelta(seconds=r.wait_s)), created_at=now)
                    s.add(w)
                    open_waits.setdefault(p.user_id, []).append(w)
                    s.add(OutboxRow(tenant_id=tenant_id, topic=TOPIC, payload={"kind": "rule.wait", "wait_id": w.id},
                                    available_at=w.due_at, created_at=now))
                    continue
                spec = self._spec_from(r, user, p.event_id, rendered[(r.id, p.event_id)])
                await self._notify(s, tenant_id, spec, now, ctxs)

    async def _rule_spec(self, r: PushRule, user: User, data: dict[str, Any], event_id: str,
                         not_before: datetime | None = None) -> _Spec:
        rendered = await self.renderer.render_async(r.template, data, variants=r.variants, user_id=user.external_id,
                                                    rule_id=r.id)
        return self._spec_from(r, user, event_id, rendered, not_before)

    def _spec_from(self, r: PushRule, user: User, event_id: str, rendered: Rendered,
                   not_before: datetime | None = None) -> _Spec:
        cap = r.per_rule_cap
        notes = ["template: fell back (missing data)"] if rendered.fell_back else []
        if rendered.variant:
            notes.append(f"variant: {rendered.variant}")
        return _Spec(
            user_id=user.external_id, category=r.category, title=rendered.title, body=rendered.body,
            url=rendered.url, dedupe_key=f"rule:{r.id}:{event_id}", data={"rule_id": r.id, "event_id": event_id},
            rule_id=r.id, event_id=event_id, critical=r.critical, priority=r.priority, max_delay_s=r.max_delay_s,
            rule_cap=(int(cap["count"]), int(cap["window_s"])) if cap else None,
            collapse_key=f"rule:{r.id}:{r.collapse_key}:{user.external_id}" if r.collapse_key else None,
            not_before=not_before, variant=rendered.variant, rewrite=r.rewrite, notes=notes,
        )

    # ------------------------------------------------------------------ deciding

    async def _context(self, s: AsyncSession, tenant_id: str, user_id: str, now: datetime,
                       need_hours: bool, cache: dict[str, _UserCtx]) -> _UserCtx:
        ctx = cache.get(user_id)
        if ctx is None:
            st = self.settings
            prefs_row = await s.get(Preferences, (tenant_id, user_id))
            tz_name = prefs_row.timezone if prefs_row and prefs_row.timezone else None
            if tz_name is None:
                tz_name = (await s.exec(select(User.timezone).where(
                    User.tenant_id == tenant_id, User.external_id == user_id))).first()
            prefs = Prefs(timezone=tz_name,
                          quiet_start=prefs_row.quiet_start if prefs_row else None,
                          quiet_end=prefs_row.quiet_end if prefs_row else None,
                          opted_out=frozenset(prefs_row.opted_out if prefs_row else ()))
            since = now - timedelta(seconds=max(st.budget_window_s, 31 * 86400))
            rows = (await s.exec(select(Notification.send_at, Notification.created_at, Notification.rule_id,
                                        Notification.category).where(
                Notification.tenant_id == tenant_id, Notification.user_id == user_id,
                col(Notification.created_at) >= since, col(Notification.status).in_(_LIVE),
            ).order_by(col(Notification.created_at).desc()).limit(st.max_recent_sends))).all()
            recent = [PastSend(aware(sa or ca), rid, cat) for sa, ca, rid, cat in rows]
            open_conv = (await s.exec(select(Conversation.id).where(
                Conversation.tenant_id == tenant_id, Conversation.user_id == user_id,
                col(Conversation.status).in_((Status.QUEUED, Status.ASSIGNED, Status.SNOOZED)))
                .limit(1))).first() is not None
            last_bad: datetime | None = None
            ratings = (await s.exec(select(Event.properties, Event.occurred_at).where(
                Event.tenant_id == tenant_id, Event.user_id == user_id, Event.name == st.rating_event,
                col(Event.occurred_at) >= now - timedelta(days=st.bad_rating_days)))).all()
            for props, at in ratings:
                rating = props.get("rating") if isinstance(props, dict) else None
                if isinstance(rating, int | float) and not isinstance(rating, bool) and rating <= st.bad_rating_max:
                    at = aware(at)
                    last_bad = at if last_bad is None or at > last_bad else last_bad
            ctx = _UserCtx(prefs, recent, SupportState(open_conv, last_bad))
            cache[user_id] = ctx
        if need_hours and ctx.hours is None:
            ctx.hours = await self._activity_hours(s, tenant_id, user_id, ctx.prefs.timezone)
        return ctx

    async def _activity_hours(self, s: AsyncSession, tenant_id: str, user_id: str, tz_name: str | None) -> list[int]:
        """When this user is active, by local hour: their recent events and the pushes they opened."""
        n = self.settings.best_time_history
        tz = zone(tz_name)
        hours = [0] * 24
        evs = (await s.exec(select(Event.occurred_at).where(Event.tenant_id == tenant_id, Event.user_id == user_id)
                            .order_by(col(Event.occurred_at).desc()).limit(n))).all()
        opens = (await s.exec(select(Notification.opened_at).where(
            Notification.tenant_id == tenant_id, Notification.user_id == user_id,
            col(Notification.opened_at).is_not(None)).order_by(col(Notification.opened_at).desc()).limit(n))).all()
        for t in [*evs, *opens]:
            if t is not None:
                hours[aware(t).astimezone(tz).hour] += 1
        return hours

    async def _notify(self, s: AsyncSession, tenant_id: str, spec: _Spec, now: datetime,
                      cache: dict[str, _UserCtx]) -> Notification | None:
        ctx = await self._context(s, tenant_id, spec.user_id, now, spec.max_delay_s > 0, cache)
        budget = await self._budget(s, tenant_id)
        # The dedupe key already used (a replayed event, a redelivered chat row): the decision
        # says "duplicate" and nothing is stored; the unique index still settles a race.
        used = (await s.exec(select(Notification.id).where(
            Notification.tenant_id == tenant_id, Notification.dedupe_key == spec.dedupe_key).limit(1))).first()
        dctx = DecisionContext(
            duplicate=used is not None,
            prefs=ctx.prefs, recent=ctx.recent, support=ctx.support, activity_hours=ctx.hours or (),
            budget=budget, budget_exempt=frozenset(self.settings.budget_exempt_categories),
            bad_rating_days=self.settings.bad_rating_days, best_time_min_samples=self.settings.best_time_min_samples,
        )
        cand = Candidate(user_id=spec.user_id, category=spec.category, rule_id=spec.rule_id, critical=spec.critical,
                         priority=spec.priority, max_delay_s=spec.max_delay_s, rule_cap=spec.rule_cap,
                         collapse_key=spec.collapse_key, dedupe_key=spec.dedupe_key, not_before=spec.not_before)
        d: Decision = decide(cand, dctx, now)
        return await self._store(s, tenant_id, spec, d, now, ctx)

    async def _budget(self, s: AsyncSession, tenant_id: str) -> tuple[int, int]:
        cached = self._cfg_cache.get(tenant_id)
        cfg: PushTenantConfig | None
        if cached is not None and cached[1] > self.now():
            cfg = cached[0]
        else:
            cfg = await s.get(PushTenantConfig, tenant_id)
            if cfg is not None:
                self._remember(cfg)
        return (cfg.budget_count if cfg and cfg.budget_count else self.settings.budget_count,
                cfg.budget_window_s if cfg and cfg.budget_window_s else self.settings.budget_window_s)

    def _remember(self, cfg: PushTenantConfig) -> None:
        # short-lived: a config change reaches every worker within this many seconds
        self._cfg_cache[cfg.tenant_id] = (cfg, self.now() + timedelta(seconds=self.settings.config_cache_s))

    async def _store(self, s: AsyncSession, tenant_id: str, spec: _Spec, d: Decision, now: datetime,
                     ctx: _UserCtx) -> Notification | None:
        if d.suppress_reason == "duplicate":
            return None  # the same candidate was already decided (replay, duplicate delivery)
        nid = new_id()
        status = "suppressed" if d.action == "suppress" else "scheduled"
        row = {
            "id": nid, "tenant_id": tenant_id, "user_id": spec.user_id, "rule_id": spec.rule_id,
            "event_id": spec.event_id, "category": spec.category, "critical": spec.critical,
            "title": spec.title, "body": spec.body, "url": spec.url, "data": spec.data,
            "decision": d.action, "reasons": [*d.reasons, *spec.notes], "suppress_reason": d.suppress_reason,
            "send_at": d.send_at, "status": status, "collapse_key": spec.collapse_key,
            "dedupe_key": spec.dedupe_key, "variant": spec.variant, "rewrite_pending": spec.rewrite,
            "created_at": now, "updated_at": now,
        }
        stmt = (self._insert(Notification).values(row)
                .on_conflict_do_nothing(index_elements=["tenant_id", "dedupe_key"]).returning(col(Notification.id)))
        if (await s.exec(stmt)).first() is None:
            return None  # decided meanwhile by a concurrent twin
        if status == "scheduled":
            assert d.send_at is not None
            if spec.collapse_key:
                # a newer notification replaces an older one not yet shown (one per conversation/rule)
                await s.exec(update(Notification).where(
                    col(Notification.tenant_id) == tenant_id, col(Notification.user_id) == spec.user_id,
                    col(Notification.collapse_key) == spec.collapse_key, col(Notification.status) == "scheduled",
                    col(Notification.id) != nid,
                ).values(status="collapsed", updated_at=now))
            s.add(OutboxRow(tenant_id=tenant_id, topic=TOPIC, payload={"kind": "deliver", "notification_id": nid},
                            available_at=d.send_at, created_at=now))
            ctx.recent.append(PastSend(d.send_at, spec.rule_id, spec.category))
        return Notification.model_validate(row)

    # ------------------------------------------------------------------ outbox handlers

    async def fire_wait(self, tenant_id: str, wait_id: str) -> str:
        """A rule's wait ran out: unless a cancel-on event came, decide and schedule."""
        now = self.now()
        async with self.db.write() as s:
            w = await s.get(PendingWait, wait_id)
            if w is None or w.tenant_id != tenant_id or w.status != "pending":
                return "not_pending"
            if w.cancel_on:
                late = (await s.exec(select(Event.event_id).where(
                    Event.tenant_id == tenant_id, Event.user_id == w.user_id, col(Event.name).in_(w.cancel_on),
                    col(Event.occurred_at) >= aware(w.trigger_at)).limit(1))).first()
                if late is not None:
                    w.status, w.cancelled_by = "cancelled", late
                    s.add(w)
                    return "cancelled"
            w.status = "fired"
            s.add(w)
            rule = await s.get(PushRule, w.rule_id)
            ev = (await s.exec(select(Event).where(Event.tenant_id == tenant_id, Event.event_id == w.event_id))).first()
            user = (await s.exec(select(User).where(User.tenant_id == tenant_id,
                                                    User.external_id == w.user_id))).first()
            if rule is None or not rule.enabled or ev is None or user is None:
                return "rule_gone"
            data = {"event": _event_context(ev.name, ev.event_id, ev.properties, aware(ev.occurred_at)),
                    "user": user_context(user)}
            spec = await self._rule_spec(rule, user, data, ev.event_id)
            spec.notes.insert(0, f"wait: {rule.wait_s}s passed without {', '.join(w.cancel_on) or 'cancel'}")
            n = await self._notify(s, tenant_id, spec, now, {})
            return "notified" if n is not None else "duplicate"

    async def handle_chat_event(self, tenant_id: str, payload: Mapping[str, Any]) -> str:
        """Chat-derived work from the outbox. Returns what happened, for logs and tests."""
        kind = payload.get("kind")
        if kind == "chat.event":
            res = await self.ingest_events(tenant_id, [{k: payload.get(k) for k in
                                                        ("event_id", "user_id", "name", "properties", "occurred_at")}])
            return "ingested" if res.accepted else ("duplicate" if res.duplicates else "rejected")
        if kind != "chat.reply":
            raise BadInput(f"kind: unknown chat payload kind {kind!r}", field="kind")
        conv_id, user_id = str(payload["conversation_id"]), str(payload["user_id"])
        seq = int(payload.get("seq") or 0)
        async with self.db.session() as s:
            read_seq = (await s.exec(select(Participant.read_seq).where(
                Participant.conversation_id == conv_id, Participant.kind == "user",
                Participant.participant_id == user_id))).first()
            # The reply as it is now: deleted by its sender meanwhile, or edited.
            msg = await s.get(Message, str(payload.get("message_id") or ""))
        if read_seq is not None and read_seq >= seq:
            return "read"
        if msg is not None and msg.deleted_at is not None:
            return "deleted"
        if self.presence.is_online(tenant_id, user_id):
            return "online"  # they are in the chat and will see it there
        sender = str(payload.get("sender_name") or "Support")
        tenant_name = str(payload.get("tenant_name") or "")
        who = f"{sender} from {tenant_name}" if tenant_name and tenant_name != sender else sender
        current = msg.text if msg is not None and msg.edited_at is not None else payload.get("text")
        text = " ".join(str(current or "").split())
        limit = self.settings.chat_reply_max_chars
        body = text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
        now = self.now()
        spec = _Spec(
            user_id=user_id, category="support", title=f"{who} replied"[: self.settings.max_title_chars],
            body=body or "New reply", url=f"/?conversation={conv_id}",
            dedupe_key=f"chat:{conv_id}:{payload.get('message_id')}",
            data={"conversation_id": conv_id, "message_id": payload.get("message_id"), "seq": seq},
            collapse_key=f"conv:{conv_id}", notes=[f"chat: unread since seq {seq}, user away"],
        )
        async with self.db.write() as s:
            n = await self._notify(s, tenant_id, spec, now, {})
        return "notified" if n is not None else "duplicate"

    async def handle_mention(self, tenant_id: str, payload: Mapping[str, Any]) -> str:
        """An agent @mentioned in a private note: a push to the agent's own devices, if the agent
        registered any (the console shows the mention live either way)."""
        agent_id, conv_id = str(payload["agent_id"]), str(payload["conversation_id"])
        target = agent_push_id(agent_id)
        async with self.db.session() as s:
            device = (await s.exec(select(Device.id).where(
                Device.tenant_id == tenant_id, Device.user_id == target,
                col(Device.active).is_(True)).limit(1))).first()
        if device is None:
            return "no_device"
        text = " ".join(str(payload.get("text") or "").split())
        limit = self.settings.chat_reply_max_chars
        author = str(payload.get("author_name") or "An agent")
        spec = _Spec(
            user_id=target, category="support", title=f"{author} mentioned you"[: self.settings.max_title_chars],
            body=(text if len(text) <= limit else text[: limit - 1].rstrip() + "…") or "A note for you",
            url=f"/agent?conversation={conv_id}", dedupe_key=f"mention:{payload.get('message_id')}:{agent_id}",
            data={"conversation_id": conv_id, "message_id": payload.get("message_id"), "seq": payload.get("seq")},
            notes=["mention: an agent named you in a private note"],
        )
        async with self.db.write() as s:
            n = await self._notify(s, tenant_id, spec, self.now(), {})
        return "notified" if n is not None else "duplicate"

    # ------------------------------------------------------------------ devices

    async def register_device(self, tenant_id: str, user_id: str, platform: str,
                              subscription: Mapping[str, Any] | None = None, token: str | None = None) -> Device:
        """Idempotent per user: the same subscription or token registered again by the same user is
        the same device (reactivated). Another user registering it gets a row of their own: a
        device never moves between users, and nobody learns that someone else holds it."""
        sub, tok = _validate_device(platform, subscription, token)
        if sub is not None:
            try:
                await self.egress.check_resolved(sub["endpoint"], "webpush")
            except EgressRefused as exc:
                raise BadInput(f"subscription.endpoint: {exc}", field="subscription.endpoint") from exc
        secret = sub["endpoint"] if sub else tok
        fp = hashlib.sha256(f"{platform}\x00{user_id}\x00{secret}".encode()).hexdigest()
        legacy = hashlib.sha256(f"{platform}\x00{secret}".encode()).hexdigest()  # rows from before per-user rows
        async with self.db.write() as s:
            dev = (await s.exec(select(Device).where(
                Device.tenant_id == tenant_id, Device.user_id == user_id,
                col(Device.fingerprint).in_((fp, legacy))).order_by(col(Device.created_at)))).first()
            if dev is None:
                dev = Device(tenant_id=tenant_id, user_id=user_id, platform=platform, subscription=sub, token=tok,
                             fingerprint=fp, created_at=self.now())
            else:
                dev.subscription, dev.token, dev.fingerprint = sub, tok, fp
                dev.active, dev.deactivated_reason = True, None
            s.add(dev)
        return dev

    # ------------------------------------------------------------------ tenant config

    async def tenant_config(self, tenant_id: str) -> PushTenantConfig:
        """The tenant's push configuration; VAPID keys are generated on first use."""
        cached = self._cfg_cache.get(tenant_id)
        if cached is not None and cached[1] > self.now() and cached[0].vapid_private_key:
            return cached[0]
        async with self.db.session() as s:
            cfg = await s.get(PushTenantConfig, tenant_id)
        if cfg is not None and cfg.vapid_private_key:
            self._remember(cfg)
            return cfg
        priv, pub = generate_vapid_keys()
        async with self.db.write() as s:
            await s.exec(self._insert(PushTenantConfig).values(
                tenant_id=tenant_id, vapid_private_key=priv, vapid_public_key=pub, created_at=self.now(),
            ).on_conflict_do_nothing(index_elements=["tenant_id"]))
            await s.exec(update(PushTenantConfig).where(
                col(PushTenantConfig.tenant_id) == tenant_id, col(PushTenantConfig.vapid_private_key).is_(None),
            ).values(vapid_private_key=priv, vapid_public_key=pub))
        async with self.db.session() as s:
            cfg = await s.get(PushTenantConfig, tenant_id)
        assert cfg is not None
        self._remember(cfg)
        return cfg

    async def configure(self, tenant_id: str, **fields: Any) -> PushTenantConfig:
        """Set FCM/APNs/webhook/budget fields (the admin surface for this is the app's)."""
        await self.tenant_config(tenant_id)
        allowed = set(PushTenantConfig.model_fields) - {"tenant_id", "created_at"}
        bad = set(fields) - allowed
        if bad:
            raise BadInput(f"{sorted(bad)[0]}: unknown push setting", field=sorted(bad)[0])
        await self._check_destinations(fields)
        async with self.db.write() as s:
            await s.exec(update(PushTenantConfig).where(col(PushTenantConfig.tenant_id) == tenant_id).values(**fields))
        self._cfg_cache.pop(tenant_id, None)
        return await self.tenant_config(tenant_id)

    async def _check_destinations(self, fields: Mapping[str, Any]) -> None:
        """A tenant's webhook and service-account token URI are URLs we will POST to."""
        url = fields.get("webhook_url")
        if url is not None:
            try:
                if not isinstance(url, str):
                    raise EgressRefused("must be a string")
                await self.egress.check_resolved(url, "webhook")
            except EgressRefused as exc:
                raise BadInput(f"webhook_url: {exc}", field="webhook_url") from exc
        account = fields.get("fcm_service_account")
        if account is not None:
            if not isinstance(account, Mapping):
                raise BadInput("fcm_service_account: must be an object", field="fcm_service_account")
            uri = account.get("token_uri", "https://oauth2.googleapis.com/token")
            try:
                if not isinstance(uri, str):
                    raise EgressRefused("must be a string")
                await self.egress.check_resolved(uri, "fcm_token")
            except EgressRefused as exc:
                raise BadInput(f"fcm_service_account.token_uri: {exc}",
                               field="fcm_service_account.token_uri") from exc

    # ------------------------------------------------------------------ stats

    async def rule_stats(self, tenant_id: str, rule_id: str) -> dict[str, Any]:
        async with self.db.session() as s:
            rows = (await s.exec(select(Notification.status, Notification.suppress_reason, func.count()).where(
                Notification.tenant_id == tenant_id, Notification.rule_id == rule_id,
            ).group_by(col(Notification.status), col(Notification.suppress_reason)))).all()
            opened, converted = (await s.exec(select(
                func.count(col(Notification.opened_at)), func.count(col(Notification.converted_at))).where(
                Notification.tenant_id == tenant_id, Notification.rule_id == rule_id))).one()
            waits = (await s.exec(select(PendingWait.status, func.count()).where(
                PendingWait.tenant_id == tenant_id, PendingWait.rule_id == rule_id,
            ).group_by(col(PendingWait.status)))).all()
        out: dict[str, Any] = {"triggered": 0, "suppressed": {}, "scheduled": 0, "sent": 0, "delivered": 0,
                               "failed": 0, "no_target": 0, "collapsed": 0, "opened": 0, "converted": 0,
                               "waiting": 0, "cancelled": 0}
        out["opened"], out["converted"] = opened, converted
        for status, reason, n in rows:
            out["triggered"] += n
            if status == "suppressed":
                out["suppressed"][reason or "unknown"] = out["suppressed"].get(reason or "unknown", 0) + n
            elif status in out:
                out[status] += n
        out["sent"] = out["delivered"] + out["failed"]
        for status, n in waits:
            if status == "pending":
                out["waiting"] += n
                out["triggered"] += n
            elif status == "cancelled":
                out["cancelled"] += n
                out["triggered"] += n
        out["conversion_rate"] = round(out["converted"] / out["delivered"], 4) if out["delivered"] else 0.0
        return out


def _validate_device(platform: str, subscription: Mapping[str, Any] | None,
                     token: str | None) -> tuple[dict[str, Any] | None, str | None]:
    if platform == "webpush":
        if not isinstance(subscription, Mapping):
            raise BadInput("subscription: is required for webpush", field="subscription")
        endpoint = subscription.get("endpoint")
        keys = subscription.get("keys")
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")) or len(endpoint) > 2000:
            raise BadInput("subscription.endpoint: must be an http(s) URL", field="subscription.endpoint")
        if not isinstance(keys, Mapping):
            raise BadInput("subscription.keys: is required", field="subscription.keys")
        for k, n in (("p256dh", 65), ("auth", 16)):
            v = keys.get(k)
            try:
                ok = isinstance(v, str) and len(b64url_decode(v)) == n
            except ValueError:
                ok = False
            if not ok:
                raise BadInput(f"subscription.keys.{k}: must be base64url of {n} bytes",
                               field=f"subscription.keys.{k}")
        return {"endpoint": endpoint, "keys": {"p256dh": keys["p256dh"], "auth": keys["auth"]}}, None
    if platform in ("fcm", "apns"):
        if not isinstance(token, str) or not token.strip() or len(token) > 4096:
            raise BadInput(f"token: is required for {platform}", field="token")
        if platform == "apns" and not all(c in "0123456789abcdefABCDEF" for c in token):
            raise BadInput("token: an APNs device token is hexadecimal", field="token")
        return None, token
    raise BadInput("platform: must be one of webpush, fcm, apns", field="platform")


def _parse_time(v: Any, now: datetime) -> datetime:
    if v is None:
        return now
    if isinstance(v, int | float) and not isinstance(v, bool):
        try:
            return datetime.fromtimestamp(float(v), UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise BadInput("occurred_at: out of range", field="occurred_at") from exc
    if isinstance(v, str) and len(v) <= 64:
        try:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError as exc:
            raise BadInput("occurred_at: must be ISO 8601 or epoch seconds", field="occurred_at") from exc
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    raise BadInput("occurred_at: must be ISO 8601 or epoch seconds", field="occurred_at")

