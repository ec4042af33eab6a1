"""The raw-driver baseline for the write path: sqlite3 and asyncpg doing the writes of a message
with nothing around them (bump the conversation's counter, insert the message and an outbox row,
commit), one message per transaction and 50 per transaction. bench/run.py runs it pinned to the
server's core in the same run as Parley's persistence figure; bench/write_path_bench.py calls it
in-process.

    python bench/raw_writes.py sqlite --seconds 3
    python bench/raw_writes.py postgresql --dsn postgresql://postgres@127.0.0.1:5432/an_empty_db
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CONVERSATIONS = 8
BATCH = 50

_SCHEMA = [
    "CREATE TABLE conversations (id VARCHAR(32) PRIMARY KEY, tenant_id VARCHAR(32) NOT NULL, "
    "last_seq INTEGER NOT NULL DEFAULT 0, updated_at TIMESTAMP NOT NULL)",
    "CREATE TABLE messages (id VARCHAR(32) PRIMARY KEY, tenant_id VARCHAR(32) NOT NULL, "
    "conversation_id VARCHAR(32) NOT NULL REFERENCES conversations(id), seq INTEGER NOT NULL, "
    "kind VARCHAR(8) NOT NULL, sender_kind VARCHAR(8) NOT NULL, sender_id VARCHAR(200) NOT NULL, "
    "text TEXT NOT NULL, client_msg_id VARCHAR(64), created_at TIMESTAMP NOT NULL, "
    "UNIQUE (conversation_id, seq), UNIQUE (conversation_id, sender_kind, sender_id, client_msg_id))",
    "CREATE INDEX ix_messages_tenant ON messages (tenant_id)",
    "CREATE TABLE outbox (id {serial} PRIMARY KEY, tenant_id VARCHAR(32) NOT NULL, topic VARCHAR(16) NOT NULL, "
    "payload TEXT NOT NULL, done BOOLEAN NOT NULL DEFAULT false, available_at TIMESTAMP NOT NULL, "
    "created_at TIMESTAMP NOT NULL)",
    "CREATE INDEX ix_outbox_pending ON outbox (topic, done, available_at)",
]
_BUMP = "UPDATE conversations SET last_seq = last_seq + 1, updated_at = {p1} WHERE id = {p2} RETURNING last_seq"
_MSG = ("INSERT INTO messages (id, tenant_id, conversation_id, seq, kind, sender_kind, sender_id, text, "
        "client_msg_id, created_at) VALUES ({ps})")
_OUT = "INSERT INTO outbox (tenant_id, topic, payload, available_at, created_at) VALUES ({ps})"


def _sql(style: str) -> tuple[str, str, str]:
    def ps(n: int) -> str:
        return ", ".join("?" if style == "qmark" else f"${i + 1}" for i in range(n))

    p1, p2 = ("?", "?") if style == "qmark" else ("$1", "$2")
    return _BUMP.format(p1=p1, p2=p2), _MSG.format(ps=ps(10)), _OUT.format(ps=ps(5))


def _message(conv: str, seq: int, now: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    mid = uuid.uuid4().hex
    msg = (mid, "t1", conv, seq, "text", "user", "u-" + conv, f"persist message {seq}", str(uuid.uuid4()), now)
    out = ("t1", "bot", json.dumps({"conversation_id": conv, "message_id": mid, "seq": seq}), now, now)
    return msg, out


# sqlite3 ---------------------------------------------------------------------------------------

def sqlite_rates(folder: Path, seconds: float) -> dict[str, float]:
    """Messages per second, one per transaction and BATCH per transaction (WAL, synchronous=NORMAL,
    as Parley runs SQLite)."""
    path = folder / f"raw-{uuid.uuid4().hex[:8]}.db"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        for stmt in _SCHEMA:
            db.execute(stmt.format(serial="INTEGER"))
        convs = [uuid.uuid4().hex for _ in range(CONVERSATIONS)]
        db.executemany("INSERT INTO conversations (id, tenant_id, updated_at) VALUES (?, 't1', ?)",
                       [(c, datetime.now(UTC).isoformat()) for c in convs])
        bump, ins_msg, ins_out = _sql("qmark")

        def one_txn(n: int, i: int) -> None:
            db.execute("BEGIN IMMEDIATE")
            now = datetime.now(UTC).isoformat()
            for k in range(n):
                conv = convs[(i + k) % CONVERSATIONS]
                seq = db.execute(bump, (now, conv)).fetchone()[0]
                msg, out = _message(conv, seq, now)
                db.execute(ins_msg, msg)
                db.execute(ins_out, out)
            db.execute("COMMIT")

        return {"one_per_txn": _loop(lambda i: one_txn(1, i), 1, seconds),
                f"batched_{BATCH}": _loop(lambda i: one_txn(BATCH, i), BATCH, seconds)}
    finally:
        db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


CPU: dict[str, float] = {}  # messages per CPU-second of this process, by mode (the same run's figures)


def _loop(fn: Any, per_call: int, seconds: float) -> float:
    end = time.perf_counter() + seconds
    t0, c0, n, i = time.perf_counter(), time.process_time(), 0, 0
    while time.perf_counter() < end:
        fn(i)
        n += per_call
        i += 1
    CPU["one_per_txn" if per_call == 1 else f"batched_{BATCH}"] = n / max(1e-9, time.process_time() - c0)
    return n / (time.perf_counter() - t0)


# asyncpg ---------------------------------------------------------------------------------------

async def postgresql_rates(dsn: str, seconds: float, *, connections: int = CONVERSATIONS) -> dict[str, float]:
    """The same on PostgreSQL through asyncpg, in an EMPTY database of its own (it makes and drops
    its tables): ``connections`` concurrent writers (one per conversation, as Parley's persistence
    scenario has one sender per conversation), each one message per transaction, then BATCH per
    transaction (executemany)."""
    import asyncpg

    pool = await asyncpg.create_pool(dsn, min_size=connections, max_size=connections)
    try:
        async with pool.acquire() as conn:
            for stmt in _SCHEMA:
                await conn.execute(stmt.format(serial="BIGSERIAL"))
            convs = [uuid.uuid4().hex for _ in range(connections)]
            await conn.executemany("INSERT INTO conversations (id, tenant_id, updated_at) VALUES ($1, 't1', $2)",
                                   [(c, datetime.now(UTC).replace(tzinfo=None)) for c in convs])
        bump, ins_msg, ins_out = _sql("numeric")

        async def writer(conv: str, n: int, end: float) -> int:
            done = 0
            async with pool.acquire() as conn:
                while time.perf_counter() < end:
                    async with conn.transaction():
                        now = datetime.now(UTC).replace(tzinfo=None)
                        if n == 1:
                            seq = await conn.fetchval(bump, now, conv)
                            msg, out = _message(conv, seq, now)
                            await conn.execute(ins_msg, *msg)
                            await conn.execute(ins_out, *out)
                        else:
                            # one counter bump for the batch, then the rows in one executemany each
                            last = await conn.fetchval(bump.replace("+ 1", f"+ {n}"), now, conv)
                            rows = [_message(conv, last - n + 1 + k, now) for k in range(n)]
                            await conn.executemany(ins_msg, [r[0] for r in rows])
                            await conn.executemany(ins_out, [r[1] for r in rows])
                    done += n
            return done

        out: dict[str, float] = {}
        for name, n in (("one_per_txn", 1), (f"batched_{BATCH}", BATCH)):
            t0, c0 = time.perf_counter(), time.process_time()
            counts = await asyncio.gather(*(writer(c, n, t0 + seconds) for c in convs))
            out[name] = sum(counts) / (time.perf_counter() - t0)
            CPU[name] = sum(counts) / max(1e-9, time.process_time() - c0)
        async with pool.acquire() as conn:
            await conn.execute("DROP TABLE outbox, messages, conversations")
        return out
    finally:
        await pool.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("database", choices=["sqlite", "postgresql"])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--dsn", help="an empty PostgreSQL database (tables conversations, messages, outbox are made)")
    ap.add_argument("--folder", type=Path, default=None)
    a = ap.parse_args()
    if a.database == "sqlite":
        with tempfile.TemporaryDirectory(dir=a.folder) as d:
            res = sqlite_rates(Path(d), a.seconds)
    else:
        res = asyncio.run(postgresql_rates(a.dsn, a.seconds))
    # The client's CPU only: on PostgreSQL the server's own work is in its backend processes.
    print(json.dumps({"database": a.database, "seconds": a.seconds, "messages_per_s": res,
                      "messages_per_cpu_s": dict(CPU)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
