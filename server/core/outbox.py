"""The transactional outbox and its one consumer.

Rows are written in the same transaction as the work they follow (a message, a status change, an
upload). An :class:`OutboxConsumer` claims due rows of one topic with a lease (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL; one writer at a time on SQLite), hands each to its ``handle`` function, and
finishes it only while it still holds the lease, so a worker that dies mid-handle is repaired by the
next claim once the lease runs out (at least once). A failed row is retried after an exponential
backoff with jitter (:class:`RetryPolicy`); a row that keeps failing is marked dead with its last
error and no longer retried.

    claim(db, topic, ...)   -> rows leased to this worker
    handle(row)             -> Outcome (done, retry with an optional Retry-After, or dead)
    finish(db, row, ...)    -> False if another worker took the row meanwhile
"""

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col, or_, select

from server.core.db import Database
from server.core.models import OutboxRow, utcnow

__all__ = ["DEAD_PREFIX", "OutboxConsumer", "Outcome", "RetryPolicy", "claim", "finish"]

log = logging.getLogger(__name__)

#: ``last_error`` of a dead-lettered row starts with this.
DEAD_PREFIX = "dead_letter: "


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how soon a failed row is tried again before it is dead-lettered."""

    max_attempts: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    #: the most a handler's own ``Retry-After`` may postpone a row
    max_retry_after_s: float = 24 * 3600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_base_s < 0 or self.backoff_max_s < 0 or self.max_retry_after_s < 0:
            raise ValueError("backoff times must not be negative")

    def backoff_s(self, attempt: int, rng: random.Random) -> float:
        """Exponential with "equal jitter": half fixed, half random, so retries spread out but grow."""
        base = min(self.backoff_max_s, self.backoff_base_s * float(2 ** min(max(attempt, 0), 30)))
        return base / 2 + rng.random() * base / 2

    def delay_s(self, attempt: int, rng: random.Random, retry_after_s: float | None = None) -> float:
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.max_retry_after_s)
        return self.backoff_s(attempt, rng)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What ``handle`` made of a row: done, dead (never retry), or neither (retry later)."""

    done: bool
    retry_after_s: float | None = None
    error: str | None = None
    dead: bool = False


async def claim(db: Database, topic: str, *, now: datetime, lease_s: float, limit: int) -> list[OutboxRow]:
    due = (
        col(OutboxRow.topic) == topic,
        col(OutboxRow.done).is_(False),
        col(OutboxRow.available_at) <= now,
        or_(col(OutboxRow.claimed_until).is_(None), col(OutboxRow.claimed_until) < now),
    )
    # Look before taking the write lock: most polls find nothing, and SQLite has one writer.
    async with db.session() as s:
        if (await s.exec(select(OutboxRow.id).where(*due).limit(1))).first() is None:
            return []
    q = select(OutboxRow).where(*due).order_by(col(OutboxRow.available_at), col(OutboxRow.id)).limit(limit)
    if not db.is_sqlite:
        q = q.with_for_update(skip_locked=True)
    lease = now + timedelta(seconds=lease_s)
    async with db.write() as s:
        rows = list((await s.exec(q)).all())
        if not rows:
            return []
        # Compare and set: on SQLite another process may have read the same rows before our
        # write lock, so only the rows still due when the update runs are ours.
        won = await s.exec(
            update(OutboxRow).where(col(OutboxRow.id).in_([r.id for r in rows]), *due)
            .values(claimed_until=lease).returning(col(OutboxRow.id)).execution_options(synchronize_session=False))
        ours = {i for (i,) in won.all()}
        for r in rows:
            s.expunge(r)
    mine = [r for r in rows if r.id in ours]
    for r in mine:
        r.claimed_until = lease
    return mine


async def finish(db: Database, row: OutboxRow, **values: Any) -> bool:
    """Update a claimed row if this worker still holds its lease; False if another took it."""
    values.setdefault("claimed_until", None)
    async with db.write() as s:
        result = await s.exec(
            update(OutboxRow)
            .where(col(OutboxRow.id) == row.id, col(OutboxRow.claimed_until) == row.claimed_until)
            .values(**values)
        )
        return bool(result.rowcount)


Handler = Callable[[OutboxRow], Awaitable[Outcome]]


class OutboxConsumer:
    """One topic's worker: ``claim / handle / finish`` under a :class:`RetryPolicy`.

    ``run`` keeps up to ``concurrency`` rows in hand and claims more as they finish;
    ``run_once`` handles one batch and returns when it is finished (tests, a CLI ``--once``).
    An exception from ``handle`` counts as a retryable failure. Cancellation leaves the row
    leased, as a crash would: it is claimed again when the lease runs out. ``on_dead`` hears of
    every row that is dead-lettered (to mark the work it stood for as failed)."""

    def __init__(
        self,
        db: Database,
        topic: str,
        handle: Handler,
        *,
        policy: RetryPolicy,
        lease_s: float,
        batch: int,
        concurrency: int = 1,
        poll_s: float = 0.5,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        on_dead: Callable[[OutboxRow, str], Awaitable[None]] | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> None:
        if batch < 1 or concurrency < 1:
            raise ValueError("batch and concurrency must be at least 1")
        self.db = db
        self.topic = topic
        self.handle = handle
        self.policy = policy
        self.lease_s = lease_s
        self.batch = batch
        self.concurrency = concurrency
        self.poll_s = poll_s
        self.clock = clock
        self.rng = rng or random.Random()
        self.on_dead = on_dead
        self.on_start = on_start
        self.wake = asyncio.Event()
        self.inflight: set[asyncio.Task[Outcome | None]] = set()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ claim / handle / finish

    async def claim(self, limit: int | None = None) -> list[OutboxRow]:
        return await claim(self.db, self.topic, now=self.clock(), lease_s=self.lease_s,
                           limit=min(limit or self.batch, self.batch))

    async def process(self, row: OutboxRow) -> Outcome | None:
        """Handle one claimed row and finish it; None if the lease was lost meanwhile."""
        try:
            out = await self.handle(row)
        except Exception as exc:  # broad on purpose: any failure of the work is a retry, then dead
            log.warning("outbox %s row %s failed: %s", self.topic, row.id, type(exc).__name__, exc_info=exc)
            out = Outcome(False, error=f"{type(exc).__name__}: {exc}"[:500])
        return out if await self.finish(row, out) else None

    async def finish(self, row: OutboxRow, out: Outcome) -> bool:
        values: dict[str, Any] = {"claimed_until": None}
        dead_error: str | None = None
        if out.dead:
            dead_error = out.error or "dead"
            values.update(done=True, attempts=row.attempts + 1, last_error=DEAD_PREFIX + dead_error)
        elif out.done:
            values.update(done=True, last_error=out.error)
        else:
            attempts = row.attempts + 1
            values.update(attempts=attempts, last_error=out.error)
            if attempts >= self.policy.max_attempts:
                dead_error = out.error or "failed"
                values.update(done=True, last_error=DEAD_PREFIX + dead_error)
            else:
                delay = self.policy.delay_s(attempts, self.rng, out.retry_after_s)
                values["available_at"] = self.clock() + timedelta(seconds=delay)
        # only if we still hold the lease: a slower twin must not undo the other's work
        held = await finish(self.db, row, **values)
        if held and dead_error is not None:
            log.warning("outbox %s row %s dead after %d attempts: %s", self.topic, row.id,
                        values.get("attempts", row.attempts), dead_error)
            if self.on_dead is not None:
                await self.on_dead(row, dead_error)
        return held

    # ------------------------------------------------------------------ running

    def _spawn(self, row: OutboxRow) -> "asyncio.Task[Outcome | None]":
        task = asyncio.create_task(self.process(row), name=f"outbox-{self.topic}-{row.id}")
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)
        return task

    async def run_once(self) -> int:
        """Claim one batch and handle it (``concurrency`` at a time); return how many were claimed."""
        rows = await self.claim()
        if not rows:
            return 0
        sem = asyncio.Semaphore(self.concurrency)

        async def one(row: OutboxRow) -> None:
            async with sem:
                await self.process(row)

        await asyncio.gather(*(one(r) for r in rows))
        return len(rows)

    async def drain(self, max_rounds: int = 1000) -> int:
        """Handle everything due now, including what ``run`` has in hand."""
        total = 0
        for _ in range(max_rounds):
            if self.inflight:
                await asyncio.gather(*list(self.inflight), return_exceptions=True)
            n = await self.run_once()
            if n == 0:
                break
            total += n
        return total

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Claim and handle until ``stop`` is set (or the task is cancelled)."""
        stop = stop or self._stop
        if self.on_start is not None:
            self.on_start()
        try:
            while not stop.is_set():
                n = 0
                free = self.concurrency - len(self.inflight)
                if free > 0:
                    try:
                        rows = await self.claim(free)
                    except Exception:  # broad on purpose: the database may be down; keep polling
                        log.exception("outbox %s claim failed", self.topic)
                        rows = []
                    for row in rows:
                        self._spawn(row)
                    n = len(rows)
                if n == 0 or len(self.inflight) >= self.concurrency:
                    await self._idle(stop)
            if self.inflight:  # stopped: let the rows in hand finish
                await asyncio.gather(*list(self.inflight), return_exceptions=True)
        finally:
            await self._cancel_inflight()  # cancelled: the rows in hand keep their lease

    async def _idle(self, stop: asyncio.Event) -> None:
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self.wake.wait()),
                                            asyncio.ensure_future(stop.wait())]
        if len(self.inflight) >= self.concurrency:
            waits.append(asyncio.ensure_future(asyncio.wait(list(self.inflight),
                                                            return_when=asyncio.FIRST_COMPLETED)))
        try:
            await asyncio.wait(waits, timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        self.wake.clear()

    async def _cancel_inflight(self) -> None:
        for task in list(self.inflight):
            task.cancel()
        if self.inflight:
            await asyncio.gather(*list(self.inflight), return_exceptions=True)

    def start(self) -> "asyncio.Task[None]":
        """Run in the background of this process (the app's start-up)."""
        self._stop.clear()
        self._task = asyncio.get_running_loop().create_task(self.run(self._stop), name=f"outbox-{self.topic}")
        return self._task

    async def stop(self, grace_s: float = 0.0) -> None:
        """Give the rows in hand ``grace_s`` to finish, then cancel them; an unfinished row is
        claimed again later (its lease runs out)."""
        self._stop.set()
        task, self._task = self._task, None
        if task is None:
            await self._cancel_inflight()
            return
        if grace_s > 0:
            await asyncio.wait({task}, timeout=grace_s)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
