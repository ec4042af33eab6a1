"""The one outbox consumer (``server.core.outbox``), on SQLite and on PostgreSQL: a failed row is
retried after an exponential backoff with jitter, dead-lettered after the policy's attempts, a
worker that dies mid-handle leaves the row to the next worker once its lease runs out, and two
workers never handle one row twice."""

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from server.core.db import Database
from server.core.models import OutboxRow
from server.core.outbox import DEAD_PREFIX, OutboxConsumer, Outcome, RetryPolicy

TOPIC = "test"


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=5)
    await database.create_all()
    yield database
    await database.dispose()


async def _add(db: Database, n: int, at: datetime) -> list[int]:
    rows = [OutboxRow(tenant_id="t1", topic=TOPIC, payload={"i": i}, available_at=at) for i in range(n)]
    async with db.write() as s:
        s.add_all(rows)
    async with db.session() as s:
        return [r.id for r in (await s.exec(select(OutboxRow).where(OutboxRow.topic == TOPIC))).all()
                if r.id is not None]


async def _row(db: Database, row_id: int) -> OutboxRow:
    async with db.session() as s:
        row = await s.get(OutboxRow, row_id)
    assert row is not None
    return row


async def test_a_failed_row_is_retried_after_a_growing_jittered_backoff(db: Database) -> None:
    clock = Clock()
    [rid] = await _add(db, 1, clock())
    calls: list[datetime] = []

    async def handle(row: OutboxRow) -> Outcome:
        calls.append(clock())
        if len(calls) < 3:
            raise ConnectionError("provider down")
        return Outcome(True)

    policy = RetryPolicy(max_attempts=5, backoff_base_s=10, backoff_max_s=1000)
    consumer = OutboxConsumer(db, TOPIC, handle, policy=policy, lease_s=30, batch=10, clock=clock,
                              rng=random.Random(3))
    assert await consumer.run_once() == 1
    row = await _row(db, rid)
    assert (row.done, row.attempts) == (False, 1) and row.last_error == "ConnectionError: provider down"
    first_delay = (row.available_at.replace(tzinfo=UTC) - clock()).total_seconds()
    assert 10 <= first_delay <= 20  # attempt 1: base * 2, half of it fixed, half jitter
    clock.advance(first_delay - 1)
    assert await consumer.run_once() == 0  # not due yet
    clock.advance(1)
    assert await consumer.run_once() == 1
    row = await _row(db, rid)
    second_delay = (row.available_at.replace(tzinfo=UTC) - clock()).total_seconds()
    assert row.attempts == 2 and 20 <= second_delay <= 40  # attempt 2: base * 4
    clock.advance(second_delay)
    assert await consumer.run_once() == 1
    row = await _row(db, rid)
    assert row.done and row.last_error is None and len(calls) == 3


async def test_jitter_spreads_retries_and_the_cap_holds() -> None:
    policy = RetryPolicy(max_attempts=9, backoff_base_s=1, backoff_max_s=60)
    rng = random.Random(7)
    delays = [policy.backoff_s(3, rng) for _ in range(50)]
    assert all(4 <= d <= 8 for d in delays) and len({round(d, 6) for d in delays}) > 40
    assert all(30 <= policy.backoff_s(20, rng) <= 60 for _ in range(20))
    assert policy.delay_s(1, rng, retry_after_s=120) == 120  # a handler's Retry-After wins ...
    assert RetryPolicy(max_retry_after_s=50).delay_s(1, rng, retry_after_s=120) == 50  # ... up to the cap
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(backoff_base_s=-1)


async def test_a_row_that_keeps_failing_is_dead_lettered_with_its_last_error(db: Database) -> None:
    clock = Clock()
    [rid] = await _add(db, 1, clock())
    calls = 0
    dead: list[tuple[int | None, str]] = []

    async def handle(row: OutboxRow) -> Outcome:
        nonlocal calls
        calls += 1
        return Outcome(False, error=f"try {calls} refused")

    async def on_dead(row: OutboxRow, error: str) -> None:
        dead.append((row.id, error))

    consumer = OutboxConsumer(db, TOPIC, handle, policy=RetryPolicy(max_attempts=4, backoff_base_s=1),
                              lease_s=30, batch=10, clock=clock, on_dead=on_dead)
    for _ in range(10):
        await consumer.run_once()
        clock.advance(3600)
    row = await _row(db, rid)
    assert calls == 4 and row.done and row.attempts == 4
    assert row.last_error == DEAD_PREFIX + "try 4 refused"
    assert dead == [(rid, "try 4 refused")]


async def test_a_handler_can_dead_letter_at_once(db: Database) -> None:
    clock = Clock()
    [rid] = await _add(db, 1, clock())

    async def handle(row: OutboxRow) -> Outcome:
        return Outcome(True, error="unknown kind", dead=True)

    consumer = OutboxConsumer(db, TOPIC, handle, policy=RetryPolicy(), lease_s=30, batch=1, clock=clock)
    await consumer.run_once()
    row = await _row(db, rid)
    assert row.done and row.last_error == DEAD_PREFIX + "unknown kind"


async def test_a_crash_mid_handle_leaves_the_row_to_the_next_worker_after_the_lease(db: Database) -> None:
    clock = Clock()
    [rid] = await _add(db, 1, clock())
    entered = asyncio.Event()
    handled: list[str] = []

    async def hang(row: OutboxRow) -> Outcome:
        entered.set()
        await asyncio.Event().wait()  # the process dies in here
        return Outcome(True)

    async def handle(row: OutboxRow) -> Outcome:
        handled.append("second")
        return Outcome(True)

    first = OutboxConsumer(db, TOPIC, hang, policy=RetryPolicy(), lease_s=60, batch=1, clock=clock)
    task = asyncio.create_task(first.run_once())
    await asyncio.wait_for(entered.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    row = await _row(db, rid)
    assert not row.done and row.claimed_until is not None and row.attempts == 0

    second = OutboxConsumer(db, TOPIC, handle, policy=RetryPolicy(), lease_s=60, batch=1, clock=clock)
    clock.advance(59)
    assert await second.run_once() == 0  # the dead worker's lease still holds
    clock.advance(2)
    assert await second.run_once() == 1
    row = await _row(db, rid)
    assert row.done and handled == ["second"]


async def test_a_worker_that_lost_its_lease_cannot_finish_the_row(db: Database) -> None:
    clock = Clock()
    [rid] = await _add(db, 1, clock())
    slow = OutboxConsumer(db, TOPIC, lambda r: asyncio.sleep(0, Outcome(True)), policy=RetryPolicy(),
                          lease_s=10, batch=1, clock=clock)
    [row] = await slow.claim()
    clock.advance(11)
    fast = OutboxConsumer(db, TOPIC, lambda r: asyncio.sleep(0, Outcome(False, error="boom")),
                          policy=RetryPolicy(), lease_s=10, batch=1, clock=clock)
    [again] = await fast.claim()
    assert not await slow.finish(row, Outcome(True))  # the slower twin does not undo the other's work
    assert await fast.finish(again, Outcome(False, error="boom"))
    assert (await _row(db, rid)).attempts == 1


async def test_two_workers_never_handle_one_row_twice(db: Database, database_url: str) -> None:
    ids = await _add(db, 60, datetime.now(UTC) - timedelta(seconds=1))
    seen: Counter[int] = Counter()

    async def handle(row: OutboxRow) -> Outcome:
        assert row.id is not None
        seen[row.id] += 1
        await asyncio.sleep(0.005)
        return Outcome(True)

    other = Database(database_url, pool_size=5)  # a second process: its own connections
    try:
        workers = [OutboxConsumer(d, TOPIC, handle, policy=RetryPolicy(), lease_s=60, batch=7, concurrency=3)
                   for d in (db, other, db, other)]
        await asyncio.gather(*(w.drain() for w in workers))
    finally:
        await other.dispose()
    assert sorted(seen) == sorted(ids) and set(seen.values()) == {1}
    async with db.session() as s:
        assert all(r.done for r in (await s.exec(select(OutboxRow))).all())


async def test_run_keeps_working_in_the_background_and_stops_cleanly(db: Database) -> None:
    done = asyncio.Event()
    handled: list[int] = []

    async def handle(row: OutboxRow) -> Outcome:
        handled.append(int(row.payload["i"]))
        if len(handled) == 5:
            done.set()
        return Outcome(True)

    consumer = OutboxConsumer(db, TOPIC, handle, policy=RetryPolicy(), lease_s=60, batch=2, concurrency=2,
                              poll_s=0.05)
    consumer.start()
    await _add(db, 5, datetime.now(UTC) - timedelta(seconds=1))
    consumer.wake.set()
    await asyncio.wait_for(done.wait(), 20)
    await consumer.stop(grace_s=1)
    assert sorted(handled) == [0, 1, 2, 3, 4] and not consumer.inflight
