"""In-process micro-benchmark of the write path: ``ChatService.post_message`` (validation, group
commit, every side row) against the raw driver doing the bare writes (bench/raw_writes.py), in
the same process and the same run, on SQLite and PostgreSQL. Prints µs per message (wall and
process CPU) and messages per second, one send at a time and many concurrent sends, each beside
the raw-driver figure and the ratio.

    PYTHONPATH=. .venv/bin/python bench/write_path_bench.py [--messages 2000] [--no-pg]

It only uses ``ChatService``'s public API, so pointing PYTHONPATH at another checkout measures
that checkout's write path in the same way (e.g. the code before group commit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import raw_writes
import run as bench_run

CONCURRENCY = 50


async def parley_rates(url: str, messages: int) -> dict[str, Any]:
    from server.accounts.auth import Principal
    from server.accounts.tenants import create_tenant
    from server.chat.service import ChatService, Sender
    from server.core.db import Database
    from server.fanout import MemoryBus, PythonFanout
    from server.migrations import upgrade

    db = Database(url, pool_size=20)
    try:
        await upgrade(db)
        tenant = (await create_tenant(db, "Bench")).tenant
        chat = ChatService(db, MemoryBus(PythonFanout()))
        users = [Principal(tenant_id=tenant.id, role="user", id=f"u-{i}", name="U")
                 for i in range(raw_writes.CONVERSATIONS)]
        convs = [(await chat.start_conversation(u)).id for u in users]

        async def send(i: int) -> None:
            u = users[i % len(users)]
            await chat.post_message(tenant.id, convs[i % len(convs)], Sender.of(u), f"persist message {i}",
                                    client_msg_id=str(uuid.uuid4()), principal=u)

        for i in range(50):  # warm the statement caches
            await send(i)
        out: dict[str, Any] = {}
        n = max(100, messages // 4)
        w0, c0 = time.perf_counter(), time.process_time()
        for i in range(n):
            await send(i)
        out["one_at_a_time"] = _figures(n, w0, c0)
        w0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, messages, CONCURRENCY):
            await asyncio.gather(*(send(i) for i in range(start, min(messages, start + CONCURRENCY))))
        out[f"concurrent_{CONCURRENCY}"] = _figures(messages, w0, c0)
        writer = getattr(chat, "writer", None)
        if writer is not None:
            out["transactions"], out["messages_written"] = writer.batches, writer.written
        return out
    finally:
        await db.dispose()


def _figures(n: int, w0: float, c0: float) -> dict[str, float]:
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {"messages": n, "us_per_message_wall": wall / n * 1e6, "us_per_message_cpu": cpu / n * 1e6,
            "messages_per_s": n / wall}


def _raw_us(rates: dict[str, float]) -> dict[str, float]:
    return {k: 1e6 / v for k, v in rates.items()}


async def run(a: argparse.Namespace, pg: list[str]) -> dict[str, Any]:
    """``pg``: two empty PostgreSQL databases (Parley's, the raw driver's), or none."""
    results: dict[str, Any] = {"loadavg_start": os.getloadavg(), "messages": a.messages}
    with tempfile.TemporaryDirectory(prefix="parley-wpb-") as d:
        results["sqlite"] = {"parley": await parley_rates(f"sqlite+aiosqlite:///{Path(d) / 'p.db'}", a.messages),
                             "raw_sqlite3": raw_writes.sqlite_rates(Path(d), a.raw_seconds),
                             "raw_per_cpu_s": dict(raw_writes.CPU)}
    if pg:
        results["postgresql"] = {"parley": await parley_rates(bench_run.pg_url(pg[0]), a.messages),
                                 "raw_asyncpg": await raw_writes.postgresql_rates(bench_run.pg_dsn(pg[1]),
                                                                                  a.raw_seconds),
                                 "raw_per_cpu_s": dict(raw_writes.CPU)}
    results["loadavg_end"] = os.getloadavg()
    return results


def report(results: dict[str, Any]) -> str:
    lines = [f"load average {results['loadavg_start']} → {results['loadavg_end']} (2 cores; figures are noisy "
             "under load, the ratios less so; 'per CPU' compares process CPU per message, which on PostgreSQL "
             "leaves the database server's own work out of both)", ""]
    head = f"{'database':<11} {'how':<16} {'Parley µs/msg wall':>19} {'cpu':>7} {'msg/s':>9}   " \
           f"{'raw µs/msg':>10} {'cpu':>7} {'raw msg/s':>10} {'Parley ÷ raw':>12} {'per CPU':>8}"
    lines.append(head)
    for db, raw_key in (("sqlite", "raw_sqlite3"), ("postgresql", "raw_asyncpg")):
        r = results.get(db)
        if not r:
            continue
        raw, raw_cpu = r[raw_key], r.get("raw_per_cpu_s", {})
        pairs = (("one_at_a_time", "one_per_txn"), (f"concurrent_{CONCURRENCY}", f"batched_{raw_writes.BATCH}"))
        for mine, theirs in pairs:
            p = r["parley"][mine]
            rc = 1e6 / raw_cpu[theirs] if raw_cpu.get(theirs) else float("nan")
            lines.append(f"{db:<11} {mine:<16} {p['us_per_message_wall']:>19.1f} {p['us_per_message_cpu']:>7.1f} "
                         f"{p['messages_per_s']:>9,.0f}   {1e6 / raw[theirs]:>10.1f} {rc:>7.1f} {raw[theirs]:>10,.0f} "
                         f"{p['messages_per_s'] / raw[theirs]:>11.0%} {rc / p['us_per_message_cpu']:>8.0%}  "
                         f"(raw: {theirs})")
        if "transactions" in r["parley"]:
            lines.append(f"{'':<11} {r['parley']['messages_written']} messages in {r['parley']['transactions']} "
                         "transactions")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--raw-seconds", type=float, default=2.0)
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    a = ap.parse_args()
    pg = [] if a.no_pg else [bench_run.pg_create() for _ in range(2)]
    try:
        results = asyncio.run(run(a, pg))
    finally:
        for name in pg:
            bench_run.pg_drop(name)
    if a.json is not None:
        a.json.write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
