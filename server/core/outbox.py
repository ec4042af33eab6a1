"""The transactional outbox: rows written with a message, claimed by workers with a lease
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL; one writer at a time on SQLite) and finished only by
the worker that still holds the lease, so a crash is repaired by the next claim."""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col, or_, select

from server.core.db import Database
from server.core.models import OutboxRow

__all__ = ["claim", "finish"]


async def claim(db: Database, topic: str, *, now: datetime, lease_s: float, limit: int) -> list[OutboxRow]:
    due = (
        OutboxRow.topic == topic,
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
        for r in rows:
            r.claimed_until = lease
            s.add(r)
    return rows


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
