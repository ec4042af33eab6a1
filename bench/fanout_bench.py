"""Fan-out, latency and idle-connection figures of issue 10, in ONE run and side by side:
Parley on socketify (native uWS topics), Parley on uvicorn, and the plain ``websockets``
broadcast server (bench/baseline_ws.py) as the baseline, each pinned to one core with the
picows load generator (bench/loadgen.py) on the other. The scenarios are bench/run.py's;
this one holds 10,000 idle connections and measures the server's CPU while nothing happens
(socketify's loop used to spin), and prints every figure beside its target and the baseline.

    .venv/bin/python bench/fanout_bench.py               # about 3 minutes
    .venv/bin/python bench/fanout_bench.py --quick       # smoke run
    .venv/bin/python bench/fanout_bench.py --only socketify,baseline --skip one2one
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import chat_procs as cp
import chat_report
import run

IDLE_CPU_TARGET = "≈ 0% (nothing to do)"


def idle_cpu(srv: cp.Server, seconds: float = 4.0) -> float:
    """The server's CPU use (share of one core) while it has nothing to do."""
    c0, t0 = cp.cpu_seconds(srv.pid), time.monotonic()
    time.sleep(seconds)
    return (cp.cpu_seconds(srv.pid) - c0) / (time.monotonic() - t0)


def table(results: dict[str, Any]) -> str:
    kinds = [k for k in chat_report.SERVERS if k in results["servers"]]
    base = results["servers"].get("baseline", {})

    def best(kind: str) -> dict[str, Any] | None:
        return chat_report.fan_best(results["servers"].get(kind, {}).get("fanout"))

    def fmt(v: Any, digits: int = 0) -> str:
        return "—" if v is None else f"{v:,.{digits}f}"

    rows: list[list[str]] = []

    def row(name: str, get: Any, target: str, digits: int = 0, ratio: bool = False) -> None:
        vals = {k: get(results["servers"].get(k, {})) for k in kinds}
        b = get(base) if base else None
        cells = [fmt(vals[k], digits) for k in kinds]
        cells += [(f"{vals[k] / b:.2f}×" if vals[k] and b else "—") if ratio else "" for k in kinds if k != "baseline"]
        rows.append([name, *cells, target])

    def step_get(key: str) -> Any:
        return lambda r: (chat_report.fan_best(r.get("fanout")) or {}).get(key)

    row("fan-out, rooms of 100: deliveries/s at p99 ≤ 50 ms", step_get("deliveries_per_s"),
        chat_report.TARGETS["fan_best"], ratio=True)
    row("  its p99 (ms)", lambda r: ((chat_report.fan_best(r.get("fanout")) or {}).get("latency") or {})
        .get("p99_ms"), "≤ 50 ms", 1)
    row("  server CPU in that step", step_get("server_cpu"), "(one core = 1.0)", 2)
    row("fan-out peak deliveries/s (any p99)", lambda r: (chat_report.fan_peak(r.get("fanout")) or {})
        .get("deliveries_per_s"), "(for a loaded machine)", ratio=True)
    row("  its p99 (ms)", lambda r: ((chat_report.fan_peak(r.get("fanout")) or {}).get("latency") or {})
        .get("p99_ms"), "", 1)
    row("one-to-one p50 (ms)", lambda r: ((r.get("one2one") or {}).get("latency") or {}).get("p50_ms"),
        chat_report.TARGETS["o2o_p50"], 2)
    row("one-to-one p99 (ms)", lambda r: ((r.get("one2one") or {}).get("latency") or {}).get("p99_ms"),
        chat_report.TARGETS["o2o_p99"], 2)
    row(f"idle: KiB per connection ({results['sizes']['idle_conns']:,} connections)",
        lambda r: (r.get("idle") or {}).get("kib_per_connection"), chat_report.TARGETS["idle"], 1)
    row("idle CPU, no connections (share of a core)", lambda r: r.get("idle_cpu"), IDLE_CPU_TARGET, 3)
    row("idle CPU, after the idle connections closed", lambda r: r.get("idle_cpu_after"), IDLE_CPU_TARGET, 3)
    head = ["", *kinds, *[f"{k[0]}÷b" for k in kinds if k != "baseline"], "target"]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)) for r in [head, *rows]]
    for k in kinds:
        b = best(k)
        if b is not None:
            lines.append(f"{k}: best fan-out step {b['in_flight']} in flight, bound by {chat_report.bound_by(b)}")
    lines.append(f"load average {results['loadavg_start']} -> {results['loadavg_end']} (2 cores shared with other "
                 "work: compare ratios, not absolute figures)")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="socketify,uvicorn,baseline")
    ap.add_argument("--skip", default="", help="comma-separated: idle,fanout,one2one")
    ap.add_argument("--idle-conns", type=int, default=10_000)
    ap.add_argument("--out", type=Path, default=run.RESULTS / "fanout.json")
    ap.add_argument("--render", type=Path, default=None, metavar="JSON", help="only print the table of a past run")
    a = ap.parse_args()
    if a.render is not None:
        print(table(json.loads(a.render.read_text())))
        return 0
    z = dict(run.SIZES["quick" if a.quick else "full"])
    z["idle_conns"] = 300 if a.quick else a.idle_conns
    skip = set(filter(None, a.skip.split(",")))
    cp.raise_nofile()
    server_core, load_core = cp.core_plan()
    if load_core is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {load_core})
    results: dict[str, Any] = {"sizes": z, "loadavg_start": cp.loadavg(), "servers": {}}
    work = Path(tempfile.mkdtemp(prefix="parley-fanout-bench-"))
    try:
        for kind in a.only.split(","):
            srv = (cp.start_baseline(work / kind, server_core) if kind == "baseline"
                   else cp.start_parley(kind, work / kind, server_core, timeout=300))  # slow on a loaded machine
            res: dict[str, Any] = results["servers"].setdefault(kind, {})
            try:
                run.settle(srv)
                res["idle_cpu"] = idle_cpu(srv)
                run.log(f"{kind}: idle CPU {res['idle_cpu']:.3f}")
                if "idle" not in skip:
                    run.guarded(results["servers"], [kind, "idle"], run.idle, srv, z, load_core)
                    run.settle(srv)
                    res["idle_cpu_after"] = idle_cpu(srv)
                if "fanout" not in skip:
                    run.guarded(results["servers"], [kind, "fanout"], run.fanout, srv, z, load_core)
                    run.settle(srv)
                if "one2one" not in skip:
                    run.guarded(results["servers"], [kind, "one2one"], run.one2one, srv, z, load_core)
            finally:
                srv.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["loadavg_end"] = cp.loadavg()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
