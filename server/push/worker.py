"""The outbox drain: claim due ``push`` rows, do the work, and only then mark them done, so a
worker that dies mid-send is repaired by the next one after the lease runs out (at least once).
Each (notification, target) has one ``Delivery`` row, so a replay never re-sends what was sent.

Claiming: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (several ``parley worker`` processes); on
SQLite, one writer at a time sets a ``claimed_until`` lease. Channel routing: a user online on
any device gets the in-app ``notification`` frame; otherwise each active device (and the tenant
webhook, if configured). Retries back off exponentially with jitter, honour ``Retry-After``, and
dead-letter after ``max_attempts``.
"""

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from server.core import outbox
from server.core.db import Database
from server.core.models import OutboxRow, utcnow
from server.core.settings import PushSettings
from server.push.engine import TOPIC, PushEngine
from server.push.models import Delivery, Device, Notification, PushTenantConfig, aware
from server.push.presence import Presence
from server.push.providers.base import DeliveryResult, DeviceTarget, Provider, PushMessage
from server.push.templates import rewrite_or_keep

__all__ = ["Outcome", "PushWorker", "backoff_s", "in_app_frame", "run_worker"]

log = logging.getLogger(__name__)
_FINAL = ("delivered", "deactivated", "failed", "dead")
_DONE_STATUSES = ("suppressed", "collapsed", "delivered", "failed", "no_target")


@dataclass(frozen=True, slots=True)
class Outcome:
    done: bool
    retry_after_s: float | None = None
    error: str | None = None
    dead: bool = False


def backoff_s(attempt: int, settings: PushSettings, rng: random.Random) -> float:
    """Exponential with "equal jitter": half fixed, half random, so retries spread out but grow."""
    base = min(settings.backoff_max_s, settings.backoff_base_s * float(2 ** min(attempt, 30)))
    return base / 2 + rng.random() * base / 2


def in_app_frame(n: Notification) -> dict[str, Any]:
    return {"type": "notification",
            "notification": {"id": n.id, "title": n.title, "body": n.body, "url": n.url, "data": n.data}}


class PushWorker:
    def __init__(self, engine: PushEngine, *, rng: random.Random | None = None) -> None:
        self.engine = engine
        self.db: Database = engine.db
        self.settings = engine.settings
        self.rng = rng or random.Random()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "asyncio.Task[None]":
        """The in-process worker (``parley serve``): call from the app's startup."""
        self._stop.clear()
        self._task = asyncio.get_running_loop().create_task(self.run(self._stop), name="push-worker")
        return self._task

    async def stop(self) -> None:
        """From the app's shutdown: finish the batch in hand (``worker_stop_s`` at most), then
        return. Unfinished rows are simply claimed again later (their lease expires)."""
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, self.settings.worker_stop_s)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                n = await self.run_once()
            except Exception:  # the database may be down; keep the loop alive and try again
                log.exception("push worker iteration failed")
                n = 0
            if n == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.worker_poll_s)

    async def run_once(self) -> int:
        rows = await self.claim()
        if not rows:
            return 0
        sem = asyncio.Semaphore(self.settings.worker_concurrency)

        async def one(row: OutboxRow) -> None:
            async with sem:
                await self.process(row)

        await asyncio.gather(*(one(r) for r in rows))
        return len(rows)

    async def drain(self, max_rounds: int = 1000) -> int:
        """Process everything due now (tests, the bench, a CLI ``--once``)."""
        total = 0
        for _ in range(max_rounds):
            n = await self.run_once()
            if n == 0:
                break
            total += n
        return total

    # ------------------------------------------------------------------ claiming

    async def claim(self) -> list[OutboxRow]:
        return await outbox.claim(self.db, TOPIC, now=self.engine.now(), lease_s=self.settings.worker_lease_s,
                                  limit=self.settings.worker_batch)

    # ------------------------------------------------------------------ processing

    async def process(self, row: OutboxRow) -> Outcome:
        payload = row.payload or {}
        kind = payload.get("kind")
        try:
            if kind == "deliver":
                out = await self.deliver(row.tenant_id, str(payload["notification_id"]), row.attempts)
            elif kind == "rule.wait":
                await self.engine.fire_wait(row.tenant_id, str(payload["wait_id"]))
                out = Outcome(True)
            elif kind in ("chat.reply", "chat.event"):
                await self.engine.handle_chat_event(row.tenant_id, payload)
                out = Outcome(True)
            else:
                out = Outcome(True, error=f"dead_letter: unknown kind {kind!r}", dead=True)
        except Exception as exc:  # noqa: BLE001 (bad payloads and database hiccups: retry, then dead-letter)
            log.warning("push outbox row %s failed: %s", row.id, type(exc).__name__)
            out = Outcome(False, error=f"{type(exc).__name__}: {exc}"[:500])
        await self.finish(row, out)
        return out

    async def finish(self, row: OutboxRow, out: Outcome) -> None:
        now = self.engine.now()
        values: dict[str, Any] = {"claimed_until": None}
        if out.done:
            values.update(done=True, last_error=out.error)
        else:
            attempts = row.attempts + 1
            values["attempts"] = attempts
            values["last_error"] = out.error
            if attempts >= self.settings.max_attempts:
                values.update(done=True, last_error=f"dead_letter: {out.error}")
            else:
                delay = (min(out.retry_after_s, self.settings.max_retry_after_s) if out.retry_after_s is not None
                         else backoff_s(attempts, self.settings, self.rng))
                values["available_at"] = now + timedelta(seconds=delay)
        # only if we still hold the lease: a slower twin must not undo the other's work
        await outbox.finish(self.db, row, **values)

    async def deliver(self, tenant_id: str, notification_id: str, attempts: int) -> Outcome:
        eng = self.engine
        async with self.db.session() as s:
            n = await s.get(Notification, notification_id)
        if n is None or n.tenant_id != tenant_id or n.status in _DONE_STATUSES:
            return Outcome(True)
        if n.collapse_key and await self._superseded(n):
            await self._set_status(n.id, "collapsed", None)
            return Outcome(True)
        if n.rewrite_pending:
            n = await self._rewrite(n)
        msg = PushMessage(notification_id=n.id, user_id=n.user_id, title=n.title, body=n.body, url=n.url,
                          data=dict(n.data or {}), category=n.category, critical=n.critical,
                          collapse_key=n.collapse_key, ttl_s=self.settings.webpush_ttl_s)
        if eng.presence.is_online(tenant_id, n.user_id) and await self._in_app(n):
            return Outcome(True)
        async with self.db.session() as s:
            devices = (await s.exec(select(Device).where(
                Device.tenant_id == tenant_id, Device.user_id == n.user_id, col(Device.active).is_(True),
            ).order_by(col(Device.created_at)))).all()
            existing = {d.device_id: d for d in (await s.exec(select(Delivery).where(
                Delivery.notification_id == n.id))).all()}
        config = await eng.tenant_config(tenant_id)
        targets = [DeviceTarget(d.id, d.platform, d.token, d.subscription) for d in devices]
        if config.webhook_url and config.webhook_secret:
            targets.append(DeviceTarget("webhook", "webhook"))
        if any(d.status == "delivered" for d in existing.values()) and not targets:
            return await self._settle(n, attempts, {}, existing)
        if not targets:
            await self._set_status(n.id, "no_target", "push")
            return Outcome(True)
        todo = [t for t in targets if t.id not in existing or existing[t.id].status not in _FINAL]
        if todo:
            await self._ensure_rows(tenant_id, n.id, [t.id for t in todo])
        results = await asyncio.gather(*(self._send_one(t, msg, config) for t in todo))
        return await self._settle(n, attempts, dict(zip([t.id for t in todo], results, strict=True)), existing)

    async def _send_one(self, target: DeviceTarget, msg: PushMessage, config: PushTenantConfig) -> DeliveryResult:
        provider: Provider | None = self.engine.providers.get(target.platform)
        if provider is None:
            return DeliveryResult.permanent(f"no provider for {target.platform}")
        try:
            async with asyncio.timeout(self.settings.provider_timeout_s * 2):
                return await provider.send(target, msg, config)
        except TimeoutError:
            return DeliveryResult.retry("provider timeout")
        except Exception as exc:  # noqa: BLE001 (a provider bug must not lose the notification: retry it)
            return DeliveryResult.retry(f"provider error: {type(exc).__name__}")

    async def _ensure_rows(self, tenant_id: str, nid: str, device_ids: list[str]) -> None:
        now = self.engine.now()
        async with self.db.write() as s:
            await s.exec(self.engine._insert(Delivery).values(
                [{"tenant_id": tenant_id, "notification_id": nid, "device_id": d, "status": "pending",
                  "attempts": 0, "updated_at": now} for d in device_ids],
            ).on_conflict_do_nothing(index_elements=["notification_id", "device_id"]))

    async def _settle(self, n: Notification, attempts: int, results: Mapping[str, DeliveryResult],
                      existing: Mapping[str, Delivery]) -> Outcome:
        now = self.engine.now()
        last_attempt = attempts + 1 >= self.settings.max_attempts
        statuses = {k: v.status for k, v in existing.items()}
        retry_after: float | None = None
        retrying = False
        errors: list[str] = []
        async with self.db.write() as s:
            for device_id, r in results.items():
                status = {"delivered": "delivered", "deactivate": "deactivated",
                          "permanent_failure": "failed", "retry": "retry"}[r.kind]
                if status == "retry":
                    if last_attempt:
                        status = "dead"
                    else:
                        retrying = True
                        if r.retry_after_s is not None:
                            retry_after = max(retry_after or 0.0, r.retry_after_s)
                if r.reason:
                    errors.append(f"{device_id}: {r.reason}")
                statuses[device_id] = status
                await s.exec(update(Delivery).where(
                    col(Delivery.notification_id) == n.id, col(Delivery.device_id) == device_id,
                    col(Delivery.status).not_in(("delivered",)),
                ).values(status=status, attempts=Delivery.attempts + 1, last_error=r.reason or None, updated_at=now))
                if r.kind == "deactivate" and device_id not in ("inapp", "webhook"):
                    await s.exec(update(Device).where(col(Device.id) == device_id).values(
                        active=False, deactivated_reason=r.reason[:200]))
            if retrying:
                return Outcome(False, retry_after, "; ".join(errors)[:500] or "retry")
            final = "delivered" if any(v == "delivered" for v in statuses.values()) else "failed"
            await s.exec(update(Notification).where(col(Notification.id) == n.id).values(
                status=final, channel=n.channel or "push", updated_at=now))
        dead = any(v == "dead" for v in statuses.values())
        return Outcome(True, None, ("dead_letter: " if dead else "") + "; ".join(errors)[:500] if errors else None,
                       dead=dead)

    async def _in_app(self, n: Notification) -> bool:
        await self._ensure_rows(n.tenant_id, n.id, ["inapp"])
        async with self.db.session() as s:
            row = (await s.exec(select(Delivery).where(Delivery.notification_id == n.id,
                                                       Delivery.device_id == "inapp"))).first()
        if row is not None and row.status == "delivered":
            return True
        ok = await self.engine.presence.deliver(n.tenant_id, n.user_id, in_app_frame(n))
        if not ok:
            return False  # went offline in between: fall back to devices
        now = self.engine.now()
        async with self.db.write() as s:
            await s.exec(update(Delivery).where(col(Delivery.notification_id) == n.id,
                                                col(Delivery.device_id) == "inapp").values(
                status="delivered", attempts=Delivery.attempts + 1, updated_at=now))
            await s.exec(update(Notification).where(col(Notification.id) == n.id).values(
                status="delivered", channel="inapp", updated_at=now))
        return True

    async def _superseded(self, n: Notification) -> bool:
        """Two notifications with one collapse key decided in concurrent transactions cannot see
        each other; here, before sending, the newest (created_at, seq, id) wins deterministically."""
        async with self.db.session() as s:
            others = (await s.exec(select(Notification).where(
                Notification.tenant_id == n.tenant_id, Notification.user_id == n.user_id,
                Notification.collapse_key == n.collapse_key, col(Notification.id) != n.id,
                col(Notification.status).in_(("scheduled", "delivered")),
            ))).all()

        def key(x: Notification) -> tuple[Any, ...]:
            seq = (x.data or {}).get("seq")
            return (aware(x.created_at), seq if isinstance(seq, int) else 0, x.id)

        mine = key(n)
        return any(key(o) > mine for o in others)

    async def _set_status(self, nid: str, status: str, channel: str | None) -> None:
        async with self.db.write() as s:
            await s.exec(update(Notification).where(col(Notification.id) == nid).values(
                status=status, channel=channel, updated_at=self.engine.now()))

    async def _rewrite(self, n: Notification) -> Notification:
        body, note = await rewrite_or_keep(self.engine.copywriter, n.body, self.settings.max_body_chars,
                                           self.settings.copywriter_timeout_s)
        reasons = [*n.reasons, note] if note else list(n.reasons)
        async with self.db.write() as s:
            await s.exec(update(Notification).where(col(Notification.id) == n.id).values(
                body=body, reasons=reasons, rewrite_pending=False))
        n.body, n.reasons, n.rewrite_pending = body, reasons, False
        return n


async def run_worker(
    db: Database,
    *,
    providers: Mapping[str, Provider],
    presence: Presence,
    settings: PushSettings | None = None,
    clock: Callable[[], datetime] = utcnow,
    stop: asyncio.Event | None = None,
) -> None:
    """Entry point for a separate worker process (``parley worker``): drains until ``stop`` is set."""
    engine = PushEngine(db, providers, presence, clock=clock, settings=settings)
    worker = PushWorker(engine)
    await worker.run(stop or asyncio.Event())

