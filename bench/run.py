"""Parley's chat benchmark, in ONE run and side by side: Parley on socketify (native uWS topics),
Parley on uvicorn, and a plain ``websockets`` broadcast server as the baseline.

Measures fan-out to rooms of 100 through the full path (auth, persist, fan-out), one-to-one
send → delivered latency with persistence, idle memory per connection, and messages persisted
per second (acks after commit) on SQLite and PostgreSQL beside a raw-driver baseline (sqlite3,
asyncpg: bench/raw_writes.py) doing the same writes in the same run. Each server runs pinned to one core
and the picows load generator (bench/loadgen.py, its own process) to the other. Prints a table
with ratios to the baseline and writes bench/results/chat.md, chat.json and chat.png.

    .venv/bin/python bench/run.py            # full run (about 5 minutes)
    .venv/bin/python bench/run.py --quick    # smoke run with small sizes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import chat_procs as cp
import chat_report

RESULTS = cp.ROOT / "bench" / "results"
PG_ADMIN_DSN = os.environ.get("PARLEY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
# A cold start imports the AI and knowledge stack: slow on a loaded 2-core machine (it is reported).
STARTUP_TIMEOUT_S = 180.0

SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "fan_rooms": 10, "fan_room_size": 100, "fan_inflight": "1,4,16,64", "fan_warmup": 1.5, "fan_duration": 3.5,
        "pairs": 4, "period_ms": 150, "o2o_warmup": 1.0, "o2o_duration": 8.0,
        "idle_conns": 5000, "idle_warm": 100, "idle_users": 50,
        "persist_senders": 16, "persist_window": 8, "persist_warmup": 1.5, "persist_duration": 5.0,
        "raw_seconds": 3.0,
    },
    "quick": {
        "fan_rooms": 2, "fan_room_size": 20, "fan_inflight": "1,4", "fan_warmup": 0.5, "fan_duration": 1.5,
        "pairs": 3, "period_ms": 50, "o2o_warmup": 0.5, "o2o_duration": 1.5,
        "idle_conns": 200, "idle_warm": 20, "idle_users": 4,
        "persist_senders": 8, "persist_window": 4, "persist_warmup": 0.5, "persist_duration": 1.5,
        "raw_seconds": 1.0,
    },
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# the load generator process ---------------------------------------------------------------------

def run_loadgen(srv: cp.Server, scenario: str, args: list[str], load_core: int | None, *,
                timeout: float = 240.0, on_event: Any = None) -> dict[str, Any]:
    """Run one loadgen scenario against ``srv``; sample the server's CPU time and run-queue wait
    around each measured window. Always kills the loadgen on the way out."""
    target = "baseline" if srv.name == "baseline" else "parley"
    cmd = [*cp.pinned(load_core), cp.PY, str(cp.ROOT / "bench" / "loadgen.py"), scenario, "--target", target,
           "--port", str(srv.port), "--deadline", str(timeout - 20), *args]
    if target == "parley" and srv.data_dir is not None:
        cmd += ["--data-dir", str(srv.data_dir)]
    err_path = (srv.data_dir or Path(tempfile.gettempdir())) / f"loadgen-{scenario}.err"
    lines: queue.Queue[str | None] = queue.Queue()
    with err_path.open("w") as err:
        proc = subprocess.Popen(cmd, cwd=cp.ROOT, stdout=subprocess.PIPE, stdin=subprocess.PIPE, stderr=err,
                                text=True, bufsize=1)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    result: dict[str, Any] | None = None
    marks: dict[int, tuple[float, float, float]] = {}
    server_steps: dict[int, dict[str, float]] = {}
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"loadgen {scenario} took longer than {timeout:.0f}s")
            try:
                line = lines.get(timeout=min(left, 5.0))
            except queue.Empty:
                continue
            if line is None:
                break
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            kind = ev.get("event")
            if kind == "measure_start" and srv.alive():
                marks[ev.get("step", 0)] = (time.monotonic(), cp.cpu_seconds(srv.pid), cp.runq_wait_s(srv.pid))
            elif kind == "measure_end" and srv.alive() and ev.get("step", 0) in marks:
                t0, c0, w0 = marks[ev.get("step", 0)]
                dt = time.monotonic() - t0
                server_steps[ev.get("step", 0)] = {"server_cpu": (cp.cpu_seconds(srv.pid) - c0) / dt,
                                                   "server_runq_wait": (cp.runq_wait_s(srv.pid) - w0) / dt}
            elif kind == "result":
                result = ev
            elif on_event is not None:
                on_event(ev, proc)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    if result is None:
        tail = err_path.read_text(errors="replace")[-1500:] if err_path.exists() else ""
        raise RuntimeError(f"loadgen {scenario} gave no result (exit {proc.returncode}): {tail}")
    result.pop("event", None)
    for step in result.get("steps", []):
        step.update(server_steps.get(step["step"], {}))
    if "steps" not in result:
        result.update(server_steps.get(0, {}))
    if not srv.alive():
        result["server_died"] = srv.log_tail(1200)
    return result


def settle(srv: cp.Server, limit: float = 8.0) -> None:
    """Wait until the server's CPU use falls (closing connections, background work), bounded."""
    end = time.monotonic() + limit
    while time.monotonic() < end and srv.alive():
        c0 = cp.cpu_seconds(srv.pid)
        time.sleep(0.5)
        if cp.cpu_seconds(srv.pid) - c0 < 0.5 * 0.35:
            return


# scenarios -------------------------------------------------------------------------------------

def idle(srv: cp.Server, z: dict[str, Any], load_core: int | None) -> dict[str, Any]:
    rss: dict[str, int] = {}

    def on_event(ev: dict[str, Any], proc: subprocess.Popen[str]) -> None:
        assert proc.stdin is not None
        if ev.get("event") == "warm":
            time.sleep(1.0)
            rss["before"] = cp.rss_kib(srv.pid)
            proc.stdin.write("go\n")
            proc.stdin.flush()
        elif ev.get("event") == "ready":
            rss["opened"] = int(ev.get("connections", 0))
            time.sleep(2.0)
            rss["after"] = cp.rss_kib(srv.pid)
            proc.stdin.write("done\n")
            proc.stdin.flush()

    res = run_loadgen(srv, "idle", ["--conns", str(z["idle_conns"]), "--warm-conns", str(z["idle_warm"]),
                                    "--idle-users", str(z["idle_users"])], load_core, timeout=300,
                      on_event=on_event)
    if "before" in rss and "after" in rss:
        added = max(1, rss.get("opened", 0) - z["idle_warm"])
        res.update(rss_before_kib=rss["before"], rss_after_kib=rss["after"], added=added,
                   kib_per_connection=(rss["after"] - rss["before"]) / added)
    return res


def fanout(srv: cp.Server, z: dict[str, Any], load_core: int | None) -> dict[str, Any]:
    return run_loadgen(srv, "fanout", ["--rooms", str(z["fan_rooms"]), "--room-size", str(z["fan_room_size"]),
                                       "--inflight", z["fan_inflight"], "--warmup", str(z["fan_warmup"]),
                                       "--duration", str(z["fan_duration"])], load_core, timeout=240)


def one2one(srv: cp.Server, z: dict[str, Any], load_core: int | None) -> dict[str, Any]:
    return run_loadgen(srv, "one2one", ["--pairs", str(z["pairs"]), "--period-ms", str(z["period_ms"]),
                                        "--warmup", str(z["o2o_warmup"]), "--duration", str(z["o2o_duration"])],
                       load_core, timeout=180)


def persist(srv: cp.Server, z: dict[str, Any], load_core: int | None) -> dict[str, Any]:
    return run_loadgen(srv, "persist", ["--senders", str(z["persist_senders"]), "--window", str(z["persist_window"]),
                                        "--warmup", str(z["persist_warmup"]),
                                        "--duration", str(z["persist_duration"])], load_core, timeout=180)


def raw_writes(database: str, server_core: int | None, seconds: float, folder: Path,
               dsn: str | None = None) -> dict[str, Any]:
    """The raw-driver baseline (bench/raw_writes.py) pinned to the server's core, in its own process."""
    cmd = [*cp.pinned(server_core), cp.PY, str(cp.ROOT / "bench" / "raw_writes.py"), database,
           "--seconds", str(seconds), "--folder", str(folder)]
    if dsn is not None:
        cmd += ["--dsn", dsn]
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(cmd, cwd=cp.ROOT, capture_output=True, text=True, timeout=60 + 4 * seconds, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"raw_writes {database} exited {proc.returncode}: {proc.stderr[-1500:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def guarded(results: dict[str, Any], path: list[str], fn: Any, *a: Any) -> None:
    """Run one measurement; a failure is recorded in the results, never ends the run."""
    node = results
    for k in path[:-1]:
        node = node.setdefault(k, {})
    t0 = time.monotonic()
    log(f"{' / '.join(path)} ...")
    try:
        node[path[-1]] = fn(*a)
    except Exception as exc:  # noqa: BLE001 (one benchmark failing must not lose the others' figures)
        node[path[-1]] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        log(f"  failed: {type(exc).__name__}: {str(exc)[:300]}")
    node[path[-1]]["wall_s"] = round(time.monotonic() - t0, 1)
    log(f"  done in {time.monotonic() - t0:.1f}s: {chat_report.one_line(path, node[path[-1]])}")


# PostgreSQL -----------------------------------------------------------------------------------

async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_create() -> str:
    name = "parley_bench_" + uuid.uuid4().hex[:10]
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    return name


def pg_drop(name: str) -> None:
    with contextlib.suppress(Exception):
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def pg_dsn(name: str) -> str:
    return PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name


def pg_url(name: str) -> str:
    host = PG_ADMIN_DSN.split("@", 1)[1].rsplit("/", 1)[0]
    user = PG_ADMIN_DSN.split("//", 1)[1].split("@", 1)[0]
    return f"postgresql+asyncpg://{user}@{host}/{name}"


# main ------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    ap.add_argument("--no-pg", action="store_true", help="skip PostgreSQL")
    ap.add_argument("--pg-uvicorn", action="store_true", help="also measure persistence on PostgreSQL on uvicorn")
    ap.add_argument("--only", choices=["persist"], default=None,
                    help="persist: only the persistence figures and their raw-driver baselines")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--render", type=Path, default=None, metavar="CHAT_JSON",
                    help="only rewrite chat.md and chat.png (into --out) from an existing chat.json")
    a = ap.parse_args()
    if a.render is not None:
        results = json.loads(a.render.read_text())
        write_outputs(results, a.out, write_json=a.render.resolve() != (a.out / "chat.json").resolve())
        return 0
    mode = "quick" if a.quick else "full"
    z = SIZES[mode]
    nofile = cp.raise_nofile()
    server_core, load_core = cp.core_plan()
    if load_core is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {load_core})
    results: dict[str, Any] = {
        "mode": mode, "started_at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": cp.machine(),
        "cores": {"server": server_core, "loadgen": load_core}, "nofile": nofile, "sizes": z,
        "loadavg_start": cp.loadavg(), "speed_index_us_start": cp.calibrate(),
    }
    work = Path(tempfile.mkdtemp(prefix="parley-bench-"))
    t_start = time.monotonic()
    log(f"{mode} run; server on core {server_core}, load generator on core {load_core}; "
        f"load average {results['loadavg_start']} (other work on this machine makes figures noisy)")
    try:
        for kind in ("socketify", "uvicorn"):
            t0 = time.monotonic()
            srv = cp.start_parley(kind, work / kind, server_core, timeout=STARTUP_TIMEOUT_S)
            results.setdefault("startup_s", {})[kind] = round(time.monotonic() - t0, 1)
            log(f"parley on {kind} up in {time.monotonic() - t0:.1f}s (pid {srv.pid})")
            try:
                if a.only is None:
                    guarded(results, ["idle", kind], idle, srv, z, load_core)
                    settle(srv)
                    guarded(results, ["fanout", kind], fanout, srv, z, load_core)
                    settle(srv)
                    guarded(results, ["one2one", kind], one2one, srv, z, load_core)
                    settle(srv)
                guarded(results, ["persist", "sqlite", kind], persist, srv, z, load_core)
                results.setdefault("server_rss_end_kib", {})[kind] = cp.rss_kib(srv.pid) if srv.alive() else None
            finally:
                srv.stop()
        guarded(results, ["persist_raw", "sqlite"], raw_writes, "sqlite", server_core, z["raw_seconds"],
                work / "raw-sqlite")
        if a.only is None:
            srv = cp.start_baseline(work / "baseline", server_core)
            log(f"baseline up (pid {srv.pid})")
            try:
                guarded(results, ["idle", "baseline"], idle, srv, z, load_core)
                settle(srv)
                guarded(results, ["fanout", "baseline"], fanout, srv, z, load_core)
                settle(srv)
                guarded(results, ["one2one", "baseline"], one2one, srv, z, load_core)
            finally:
                srv.stop()
        if not a.no_pg:
            for kind in ("socketify", "uvicorn") if a.pg_uvicorn else ("socketify",):
                try:
                    db = pg_create()
                except Exception as exc:  # noqa: BLE001 (any failure to reach PostgreSQL means: skip it, say why)
                    results.setdefault("persist", {}).setdefault("postgresql", {})[kind] = {
                        "error": f"PostgreSQL unavailable: {type(exc).__name__}: {exc}"}
                    log(f"PostgreSQL unavailable: {exc}")
                    break
                try:
                    srv = cp.start_parley(kind, work / f"pg-{kind}", server_core,
                                          {"PARLEY_DATABASE_URL": pg_url(db)}, timeout=STARTUP_TIMEOUT_S)
                    try:
                        guarded(results, ["persist", "postgresql", kind], persist, srv, z, load_core)
                    finally:
                        srv.stop()
                finally:
                    pg_drop(db)
            try:
                raw_db = pg_create()
            except Exception as exc:  # noqa: BLE001 (any failure to reach PostgreSQL means: skip it, say why)
                results.setdefault("persist_raw", {})["postgresql"] = {"error": f"PostgreSQL unavailable: {exc}"}
            else:
                try:
                    guarded(results, ["persist_raw", "postgresql"], raw_writes, "postgresql", server_core,
                            z["raw_seconds"], work / "raw-pg", pg_dsn(raw_db))
                finally:
                    pg_drop(raw_db)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["loadavg_end"] = cp.loadavg()
    results["speed_index_us_end"] = cp.calibrate()
    results["total_s"] = round(time.monotonic() - t_start, 1)
    write_outputs(results, a.out)
    log(f"done in {results['total_s']}s")
    return 0


def write_outputs(results: dict[str, Any], out: Path, *, write_json: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if write_json:
        (out / "chat.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "chat.md").write_text(chat_report.markdown(results))
    try:
        chat_report.plot(results, out / "chat.png")
    except ImportError:
        log("matplotlib is not installed: no PNG (pip install matplotlib)")
    print()
    print(chat_report.console_table(results))
    log(f"wrote {out / 'chat.md'}, chat.json, chat.png")


if __name__ == "__main__":
    raise SystemExit(main())
