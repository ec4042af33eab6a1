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
import logging
import random
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from server.core.db import Database
from server.core.models import OutboxRow, utcnow
from server.core.outbox import OutboxConsumer, Outcome, RetryPolicy
from server.core.settings import PushSettings
from server.push.engine import TOPIC, PushEngine
from server.push.models import Delivery, Device, Notification, PushTenantConfig, aware
from server.push.presence import Presence
from server.push.providers.base import DeliveryResult, DeviceTarget, Provider, PushMessage
from server.push.templates import rewrite_or_keep

__all__ = ["Outcome", "PushWorker", "in_app_frame", "retry_policy", "run_worker"]

log = logging.getLogger(__name__)
_FINAL = ("delivered", "deactivated", "failed", "dead")
_DONE_STATUSES = ("suppressed", "collapsed", "delivered", "failed", "no_target")


def in_app_frame(n: Notification) -> dict[str, Any]:
    return {"type": "notification",
            "notification": {"id": n.id, "title": n.title, "body": n.body, "url": n.url, "data": n.data}}


def retry_policy(settings: PushSettings) -> RetryPolicy:
    return RetryPolicy(max_attempts=settings.max_attempts, backoff_base_s=settings.backoff_base_s,
                       backoff_max_s=settings.backoff_max_s, max_retry_after_s=settings.max_retry_after_s)


class PushWorker:
    """The ``push`` topic's handler on the one outbox consumer (:mod:`server.core.outbox`)."""

    def __init__(self, engine: PushEngine, *, rng: random.Random | None = None) -> None:
        self.engine = engine
        self.db: Database = engine.db
        self.settings = engine.settings
        self.consumer = OutboxConsumer(
            self.db, TOPIC, self.process, policy=retry_policy(self.settings), lease_s=self.settings.worker_lease_s,
            batch=self.settings.worker_batch, concurrency=self.settings.worker_concurrency,
            poll_s=self.settings.worker_poll_s, clock=engine.now, rng=rng)

    def start(self) -> "asyncio.Task[None]":
        """The in-process worker (``parley serve``): call from the app's startup."""
        return self.consumer.start()

    async def stop(self, timeout_s: float | None = None) -> None:
        """From the app's shutdown: finish the rows in hand (``worker_stop_s`` at most), then
        return. Unfinished rows are simply claimed again later (their lease expires)."""
        await self.consumer.stop(grace_s=self.settings.worker_stop_s if timeout_s is None else timeout_s)

    async def run(self, stop: asyncio.Event) -> None:
        await self.consumer.run(stop)

    async def run_once(self) -> int:
        return await self.consumer.run_once()

    async def drain(self, max_rounds: int = 1000) -> int:
        """Process everything due now (tests, the bench, a CLI ``--once``)."""
        return await self.consumer.drain(max_rounds)

    async def process(self, row: OutboxRow) -> Outcome:
        payload = row.payload or {}
        kind = payload.get("kind")
        if kind == "deliver":
            return await self.deliver(row.tenant_id, str(payload["notification_id"]), row.attempts)
        if kind == "rule.wait":
            await self.engine.fire_wait(row.tenant_id, str(payload["wait_id"]))
            return Outcome(True)
        if kind in ("chat.reply", "chat.event"):
            await self.engine.handle_chat_event(row.tenant_id, payload)
            return Outcome(True)
        if kind == "desk.mention":
            await self.engine.handle_mention(row.tenant_id, payload)
            return Outcome(True)
        return Outcome(True, error=f"unknown kind {kind!r}", dead=True)

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
        return Outcome(True, None, "; ".join(errors)[:500] or None, dead=dead)

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

