"""Tables and the plot for the chat benchmark (bench/run.py): console, markdown, PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SERVERS = ("socketify", "uvicorn", "baseline")
LABEL = {"socketify": "Parley on socketify (native topics)", "uvicorn": "Parley on uvicorn",
         "baseline": "plain websockets (baseline)"}
FANOUT_P99_MS = 50.0

TARGETS = {
    "fan_best": "≥ 150k deliveries/s at p99 ≤ 50 ms; ≥ 1.5× baseline",
    "o2o_p50": "p50 ≤ 2 ms",
    "o2o_p99": "p99 ≤ 10 ms",
    "idle": "10,000 at ≤ 12 KiB each",
    "persist": "≥ 5,000/s",
    "persist_sqlite": "≥ 20,000/s and ≥ 0.30× raw sqlite3",
    "persist_postgresql": "≥ 10,000/s and ≥ 0.30× raw asyncpg",
}
RAW_DRIVER = {"sqlite": "sqlite3", "postgresql": "asyncpg"}
RAW_MODES = {"one_per_txn": "one message per transaction", "batched_50": "50 messages per transaction"}


def _get(d: Any, *path: str) -> Any:
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def fan_best(res: dict[str, Any] | None, p99_limit: float = FANOUT_P99_MS) -> dict[str, Any] | None:
    """The step with the most deliveries/s whose p99 is within the limit."""
    steps = [s for s in (res or {}).get("steps", []) if (s["latency"].get("p99_ms") or 1e9) <= p99_limit]
    return max(steps, key=lambda s: s["deliveries_per_s"]) if steps else None


def fan_peak(res: dict[str, Any] | None) -> dict[str, Any] | None:
    steps = (res or {}).get("steps", [])
    return max(steps, key=lambda s: s["deliveries_per_s"]) if steps else None


def per_cpu(step: dict[str, Any] | None, key: str) -> float | None:
    """A rate divided by the server's CPU share in that window: robust to other load on the core
    (pessimistic for socketify, whose loop spins while idle)."""
    if not step or not step.get("server_cpu"):
        return None
    return float(step[key]) / max(0.05, float(step["server_cpu"]))


def bound_by(step: dict[str, Any]) -> str:
    cpu, wait, lg = step.get("server_cpu", 0), step.get("server_runq_wait", 0), step.get("loadgen_cpu", 0)
    parts = []
    if cpu >= 0.85:
        parts.append("server CPU")
    if lg >= 0.85:
        parts.append("load generator CPU")
    if wait >= 0.2:
        parts.append("server starved by other load")
    return ", ".join(parts) or "latency (neither side saturated)"


def _num(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "—"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}×"


def _err(res: Any) -> str | None:
    if isinstance(res, dict) and "error" in res:
        return str(res["error"]).splitlines()[0][:120]
    return None


def rows(results: dict[str, Any]) -> list[list[str]]:
    """[scenario, metric, socketify, uvicorn, baseline, s÷b, u÷b, target]"""
    out: list[list[str]] = []
    fan = results.get("fanout", {})
    best = {k: fan_best(fan.get(k)) for k in SERVERS}
    peak = {k: fan_peak(fan.get(k)) for k in SERVERS}

    def bv(k: str, key: str) -> float | None:
        s = best[k]
        return None if s is None else s[key]

    def lat(step: dict[str, Any] | None, q: str) -> float | None:
        return None if step is None else step["latency"].get(q)

    def row(scn: str, metric: str, vals: dict[str, float | None], target: str, digits: int = 0,
            ratio: bool = True) -> None:
        cells = []
        for k in SERVERS:
            e = _err(_get(results, *scn_path(scn, k)))
            cells.append(f"error: {e}" if e and vals.get(k) is None else _num(vals.get(k), digits))
        b = vals.get("baseline")
        out.append([scn, metric, *cells,
                    _ratio(vals.get("socketify"), b) if ratio else "—",
                    _ratio(vals.get("uvicorn"), b) if ratio else "—", target])

    def scn_path(scn: str, k: str) -> list[str]:
        if scn.startswith("fan-out"):
            return ["fanout", k]
        if scn.startswith("one-to-one"):
            return ["one2one", k]
        if scn.startswith("idle"):
            return ["idle", k]
        return ["x"]

    row("fan-out, rooms of 100", f"deliveries/s, best step with p99 ≤ {FANOUT_P99_MS:g} ms",
        {k: bv(k, "deliveries_per_s") for k in SERVERS}, TARGETS["fan_best"])
    row("fan-out, rooms of 100", "  p50 / p99 ms at that step",
        dict.fromkeys(SERVERS), "", ratio=False)
    out[-1][2:5] = [f"{_num(lat(best[k], 'p50_ms'), 1)} / {_num(lat(best[k], 'p99_ms'), 1)}" if best[k] else "—"
                    for k in SERVERS]
    row("fan-out, rooms of 100", "deliveries/s, peak step (any latency)",
        {k: (peak[k] or {}).get("deliveries_per_s") for k in SERVERS}, "")
    row("fan-out, rooms of 100", "  p99 ms at the peak step", {k: lat(peak[k], "p99_ms") for k in SERVERS}, "",
        digits=1)
    row("fan-out, rooms of 100", "deliveries per server CPU-second, peak step",
        {k: per_cpu(peak[k], "deliveries_per_s") for k in SERVERS},
        "(noise-robust: what one full core would give)")
    o2o = results.get("one2one", {})
    row("one-to-one send → delivered", "p50 ms", {k: _get(o2o, k, "latency", "p50_ms") for k in SERVERS},
        TARGETS["o2o_p50"], digits=2)
    row("one-to-one send → delivered", "p99 ms", {k: _get(o2o, k, "latency", "p99_ms") for k in SERVERS},
        TARGETS["o2o_p99"], digits=2)
    idle = results.get("idle", {})
    n_idle = _get(results, "sizes", "idle_conns") or 0
    row(f"idle connections ({n_idle:,})", "KiB of server RSS per connection",
        {k: _get(idle, k, "kib_per_connection") for k in SERVERS}, TARGETS["idle"], digits=1)
    per = results.get("persist", {})
    for db, name in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        vals = {k: _get(per, db, k, "acks_per_s") for k in ("socketify", "uvicorn")}
        cells = []
        for k in ("socketify", "uvicorn"):
            e = _err(_get(per, db, k))
            cells.append(f"error: {e}" if e else _num(vals[k]) if _get(per, db, k) else "not run")
        # The baseline column: the raw driver doing the same writes, in the same run, on the same core.
        raw = _get(results, "persist_raw", db) or {}
        for mode, label in RAW_MODES.items():
            b = _get(raw, "messages_per_s", mode)
            base = f"error: {_err(raw)}" if _err(raw) else _num(b) if b is not None else "not run"
            out.append([f"messages persisted, {name}", f"acks/s (ack after commit) vs raw {RAW_DRIVER[db]}, {label}",
                        *cells, base, _ratio(vals["socketify"], b), _ratio(vals["uvicorn"], b),
                        TARGETS[f"persist_{db}"]])
        # The same per CPU-second of the process (noise-robust when other work takes the core).
        cpu = {k: per_cpu(_get(per, db, k), "acks_per_s") for k in ("socketify", "uvicorn")}
        b = _get(raw, "messages_per_cpu_s", "batched_50")
        if any(v is not None for v in cpu.values()) and b is not None:
            out.append([f"messages persisted, {name}", f"acks per server CPU-second vs raw {RAW_DRIVER[db]} per "
                        "CPU-second, 50 per transaction", _num(cpu["socketify"]), _num(cpu["uvicorn"]), _num(b),
                        _ratio(cpu["socketify"], b), _ratio(cpu["uvicorn"], b),
                        "(noise-robust; on PostgreSQL the raw figure leaves out the database's own CPU)"])
    return out


HEAD = ["scenario", "metric", "socketify", "uvicorn", "baseline", "socketify ÷ baseline", "uvicorn ÷ baseline",
        "target (QUALITY.md)"]


def console_table(results: dict[str, Any]) -> str:
    rs = [HEAD, *rows(results)]
    widths = [max(len(r[i]) for r in rs) for i in range(len(HEAD))]
    lines = []
    for n, r in enumerate(rs):
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    noise = noise_line(results)
    return "\n".join(lines) + ("\n\n" + noise if noise else "")


def noise_line(results: dict[str, Any]) -> str:
    waits = []
    for scen in ("fanout", "one2one"):
        for k in SERVERS:
            r = _get(results, scen, k)
            for s in (r or {}).get("steps", [r] if r else []):
                if isinstance(s, dict) and s.get("server_runq_wait") is not None:
                    waits.append(s["server_runq_wait"])
    la0, la1 = results.get("loadavg_start"), results.get("loadavg_end")
    msg = (f"Machine load average at start {la0}, at end {la1} ({results['machine'].get('nproc')} cores); "
           f"speed index (µs for `sum(range(1000))`, about 8-10 on an idle modern core) "
           f"{results.get('speed_index_us_start')} at start, {results.get('speed_index_us_end')} at end.")
    if waits:
        msg += (f" While measuring, the server's event loop waited for a CPU {min(waits):.0%}–{max(waits):.0%} "
                "of the time (run-queue wait from /proc/PID/schedstat): other processes shared its core.")
    la = max((la0 or [0])[0], (la1 or [0])[0])
    if la > 1.5 or (waits and max(waits) > 0.1):
        msg += " NOISY RUN: other work on the machine competed with the benchmark; treat absolute figures as " \
               "lower bounds and compare within this run."
    return msg


def one_line(path: list[str], res: dict[str, Any]) -> str:
    if "error" in res:
        return "error: " + str(res["error"]).splitlines()[0][:200]
    if path[0] == "fanout":
        parts = [f"{s['in_flight']} in flight: {s['deliveries_per_s']:,.0f} deliv/s "
                 f"p99 {s['latency'].get('p99_ms') or 0:.1f} ms "
                 f"(srv cpu {s.get('server_cpu', 0):.0%}, runq {s.get('server_runq_wait', 0):.0%}, "
                 f"lg cpu {s.get('loadgen_cpu', 0):.0%})" for s in res.get("steps", [])]
        return "; ".join(parts) + f"; missing {res.get('missing_after_drain')}, errors {res.get('errors')}"
    if path[0] == "one2one":
        lat = res.get("latency", {})
        return (f"{res.get('messages_per_s', 0):.0f} msg/s, p50 {lat.get('p50_ms') or 0:.2f} ms, "
                f"p99 {lat.get('p99_ms') or 0:.2f} ms, timeouts {res.get('timeouts')}, errors {res.get('errors')}")
    if path[0] == "idle":
        return (f"{res.get('kib_per_connection', 0):.1f} KiB/conn ({res.get('rss_before_kib')} → "
                f"{res.get('rss_after_kib')} KiB, {res.get('added')} added, connect {res.get('connect_s')}s), "
                f"errors {res.get('errors')}")
    if path[0] == "persist_raw":
        return ", ".join(f"{RAW_MODES.get(k, k)} {v:,.0f}/s" for k, v in res.get("messages_per_s", {}).items())
    if path[0] == "persist":
        lat = res.get("ack_latency", {})
        return (f"{res.get('acks_per_s', 0):,.0f} acks/s, ack p50 {lat.get('p50_ms') or 0:.1f} ms p99 "
                f"{lat.get('p99_ms') or 0:.1f} ms, errors {res.get('errors')}")
    return ""


def _md_table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in body]
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    z = results.get("sizes", {})
    md = [
        "# Chat core benchmark",
        "",
        f"Generated by `bench/run.py{' --quick' if results.get('mode') == 'quick' else ''}` on "
        f"{results.get('started_at')} ({results.get('mode')} run, {results.get('total_s')} s).",
        "",
        f"**Machine:** {m.get('nproc')} cores, {m.get('cpu_model')}, {m.get('mem_gib')} GiB RAM, Linux "
        f"{m.get('kernel')}, Python {m.get('python')}. Server pinned to core {results['cores'].get('server')}, "
        f"load generator to core {results['cores'].get('loadgen')} (`taskset`).",
        "",
        f"**Noise:** {noise_line(results)}",
        "",
        "## Results",
        "",
        "Ratios are Parley ÷ baseline (higher is better for throughput, lower for latency and memory).",
        "",
        _md_table(HEAD, rows(results)),
        "",
        "## Fan-out sweep (rooms of 100, full path)",
        "",
    ]
    body = []
    for k in SERVERS:
        r = _get(results, "fanout", k) or {}
        if "error" in r:
            body.append([LABEL[k], "error", str(r["error"])[:150], "", "", "", "", "", "", "", "", "", ""])
        for s in r.get("steps", []):
            lat = s["latency"]
            body.append([LABEL[k], str(s["in_flight"]), str(s.get("senders")), _num(s["messages_per_s"]),
                         _num(s["deliveries_per_s"]), _num(lat.get("p50_ms"), 1), _num(lat.get("p90_ms"), 1),
                         _num(lat.get("p99_ms"), 1), _num(s.get("longest_pause_ms"), 0),
                         f"{s.get('server_cpu', 0):.0%}", f"{s.get('server_runq_wait', 0):.0%}",
                         f"{s.get('loadgen_cpu', 0):.0%}", bound_by(s)])
    md += [_md_table(["server", "messages in flight", "rooms sending", "messages/s", "deliveries/s", "p50 ms",
                      "p90 ms", "p99 ms", "longest pause ms", "server CPU", "server waiting for CPU", "loadgen CPU",
                      "bound by"], body), "",
           "`longest pause`: the longest stretch with no delivery at all during the window. `server waiting for "
           "CPU`: share of the window the server's event loop was runnable but another process had its core.",
           ""]
    for k in SERVERS:
        r = _get(results, "fanout", k) or {}
        if r.get("steps"):
            md.append(f"- {LABEL[k]}: {r.get('connections')} connections, set up in {r.get('setup_s')} s; "
                      f"{r.get('sent_total')} messages sent, {r.get('missing_after_drain')} deliveries missing "
                      f"after a 5 s drain; errors {r.get('errors') or 'none'}, unexpected disconnects "
                      f"{r.get('unexpected_disconnects')}.")
    md += ["", "## One-to-one, idle memory, persistence (details)", ""]
    body = []
    for k in SERVERS:
        r = _get(results, "one2one", k) or {}
        lat = r.get("latency", {})
        body.append([f"one-to-one, {LABEL[k]}",
                     f"{_num(r.get('messages_per_s'))} msg/s over {r.get('pairs')} pairs, one every "
                     f"{r.get('period_ms')} ms each",
                     f"p50 {_num(lat.get('p50_ms'), 2)} / p90 {_num(lat.get('p90_ms'), 2)} / p99 "
                     f"{_num(lat.get('p99_ms'), 2)} / max {_num(lat.get('max_ms'), 2)} ms (n={lat.get('n')})",
                     f"server CPU {r.get('server_cpu', 0):.0%}, waiting {r.get('server_runq_wait', 0):.0%}; "
                     f"timeouts {r.get('timeouts')}; errors {r.get('errors') or 'none'}"
                     + (f"; {r['error'][:150]}" if "error" in r else "")])
    for k in SERVERS:
        r = _get(results, "idle", k) or {}
        who = f"over {r.get('users')} users" if k != "baseline" else "each in its own room"
        body.append([f"idle, {LABEL[k]}", f"{r.get('added')} connections {who} (+{r.get('warm_connections')} "
                     "warm-up)",
                     f"RSS {r.get('rss_before_kib')} → {r.get('rss_after_kib')} KiB = "
                     f"{_num(r.get('kib_per_connection'), 2)} KiB each",
                     f"connected in {r.get('connect_s')} s; open at end {r.get('open_at_end')}; errors "
                     f"{r.get('errors') or 'none'}" + (f"; {r['error'][:150]}" if "error" in r else "")])
    for db in ("sqlite", "postgresql"):
        for k in ("socketify", "uvicorn"):
            r = _get(results, "persist", db, k)
            if r is None:
                continue
            lat = r.get("ack_latency", {})
            body.append([f"persist, {db}, {LABEL[k]}", f"{r.get('senders')} senders × {r.get('window')} in flight",
                         f"{_num(r.get('acks_per_s'))} acks/s ({_num(per_cpu(r, 'acks_per_s'))} per server "
                         f"CPU-second); ack p50 {_num(lat.get('p50_ms'), 1)} / p99 {_num(lat.get('p99_ms'), 1)} ms",
                         f"server CPU {r.get('server_cpu', 0):.0%}, waiting {r.get('server_runq_wait', 0):.0%}; "
                         f"errors {r.get('errors') or 'none'}" + (f"; {r['error'][:150]}" if "error" in r else "")])
    md += [_md_table(["scenario", "load", "result", "notes"], body), ""]
    md += [
        "## How it was measured",
        "",
        "- One run, side by side: each server in turn on the same core, the same picows load generator "
        "(`bench/loadgen.py`, a separate process on the other core) against each. Parley is started with "
        "`parley serve --server socketify|uvicorn` on a fresh data dir (SQLite) with the per-connection and "
        "per-user rate limits and the per-user connection cap raised (`PARLEY_RATE_PER_*`, `PARLEY_BURST_PER_*`, "
        "`PARLEY_MAX_CONNECTIONS_PER_USER=1000`) and `PARLEY_DEMO_KNOWLEDGE=false`. Tokens are minted with "
        "`POST /v1/tokens` and the demo admin key.",
        "- The benchmark tenant's default bot is unset (`PATCH /v1/bots/{id}` `is_default: false`), so "
        "conversations start `queued` and the AI agent answers none of the messages: this measures the chat "
        "core (auth, persist, fan-out), not the bot.",
        f"- Fan-out: {z.get('fan_rooms')} rooms of {z.get('fan_room_size')} connections. In Parley a room is ONE "
        "user's conversation with that user's connections as its members (every connection of a user follows "
        "its open conversations; `PARLEY_MAX_CONNECTIONS_PER_USER` raised). Agents were not used to fill rooms "
        "because each agent costs an argon2 hash (~0.4 s here) to create. One connection per room sends "
        "(`send` frames, each persisted and acknowledged before fan-out); N messages are kept in flight over "
        "all rooms (a sender's next message goes out when its own copy comes back). Every delivery to every "
        "member, the sender's own copy included, counts (100 per message). Latency is the receive time minus "
        "the send time carried in the text (one process, monotonic clock). N is swept "
        f"({z.get('fan_inflight')}), {z.get('fan_warmup')} s warm-up + {z.get('fan_duration')} s "
        "measured per step; the headline is the best step whose p99 stays within 50 ms.",
        "- Baseline: `bench/baseline_ws.py`, a plain `websockets` (17, on uvloop) server; rooms are URL paths, "
        "each `send` is wrapped in a message envelope shaped like Parley's and broadcast with "
        "`websockets.broadcast` to every member, the sender included. No auth, no storage.",
        f"- One-to-one: {z.get('pairs')} conversations, each a user (sender) and one connection of an agent "
        "subscribed to it (receiver). Each pair sends, waits for the agent to receive it, and sends again "
        f"{z.get('period_ms')} ms after the previous send. Baseline: rooms of two.",
        f"- Idle memory: {z.get('idle_warm')} warm-up connections, server RSS read (`/proc/PID/status` VmRSS), "
        f"then {z.get('idle_conns'):,} more authenticated connections (hello → welcome → ping/pong) held open, "
        "RSS read again 2 s later; KiB per connection = RSS delta / connections added. Parley's connections "
        f"belong to {z.get('idle_users')} users (minting a token per connection through REST would dominate "
        "the run).",
        f"- Persistence: {z.get('persist_senders')} users with a conversation and a connection each, "
        f"{z.get('persist_window')} sends in flight each; counts `ack` frames (sent after commit). PostgreSQL: "
        "a fresh database created for the run and dropped after (`PARLEY_DATABASE_URL=postgresql+asyncpg://...`). "
        "Baseline: `bench/raw_writes.py` pinned to the server's core, the raw driver (sqlite3 with WAL and "
        "synchronous=NORMAL as Parley runs it; asyncpg with one connection per conversation) doing the bare "
        "writes of a message (bump the counter, insert the message and an outbox row, commit), one message per "
        "transaction and 50 per transaction, in its own fresh database.",
        "- Server CPU and run-queue wait are read from `/proc/PID/stat` and `/proc/PID/schedstat` at the start "
        "and end of each measured window.",
        "",
    ]
    return "\n".join(md)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"socketify": "#1f77b4", "uvicorn": "#ff7f0e", "baseline": "#7f7f7f"}
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    ax = axes[0][0]
    for k in SERVERS:
        steps = (_get(results, "fanout", k) or {}).get("steps", [])
        if steps:
            ax.plot([s["deliveries_per_s"] for s in steps], [s["latency"]["p99_ms"] or 0 for s in steps], "o-",
                    color=colors[k], label=LABEL[k])
            for s in steps:
                ax.annotate(f"{s['in_flight']}", (s["deliveries_per_s"], s["latency"]["p99_ms"] or 0), fontsize=8,
                            textcoords="offset points", xytext=(4, 4))
    ax.axhline(FANOUT_P99_MS, color="red", ls="--", lw=1)
    ax.axvline(150_000, color="red", ls="--", lw=1, label="target: 150k/s at p99 ≤ 50 ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("deliveries/s (log)")
    ax.set_ylabel("p99 delivery latency, ms (log)")
    ax.set_title("Fan-out, rooms of 100 (labels: messages in flight)")
    ax.legend(fontsize=8)

    ax = axes[0][1]
    xs = range(len(SERVERS))
    p50 = [_get(results, "one2one", k, "latency", "p50_ms") or 0 for k in SERVERS]
    p99 = [_get(results, "one2one", k, "latency", "p99_ms") or 0 for k in SERVERS]
    ax.bar_label(ax.bar([x - 0.2 for x in xs], p50, 0.4, label="p50", color="#2ca02c"), fmt="%.1f", fontsize=8)
    ax.bar_label(ax.bar([x + 0.2 for x in xs], p99, 0.4, label="p99", color="#d62728"), fmt="%.1f", fontsize=8)
    ax.axhline(2, color="#2ca02c", ls="--", lw=1, label="target p50 ≤ 2 ms")
    ax.axhline(10, color="#d62728", ls="--", lw=1, label="target p99 ≤ 10 ms")
    ax.set_xticks(list(xs), list(SERVERS))
    ax.set_ylabel("ms")
    ax.set_title("One-to-one send → delivered")
    ax.legend(fontsize=8)

    ax = axes[1][0]
    kib = [_get(results, "idle", k, "kib_per_connection") or 0 for k in SERVERS]
    ax.bar_label(ax.bar(list(xs), kib, color=[colors[k] for k in SERVERS]), fmt="%.1f", fontsize=8)
    ax.axhline(12, color="red", ls="--", lw=1, label="target ≤ 12 KiB")
    ax.set_xticks(list(xs), list(SERVERS))
    ax.set_ylabel("KiB of RSS per connection")
    ax.set_title(f"Idle connections ({_get(results, 'sizes', 'idle_conns') or 0:,})")
    ax.legend(fontsize=8)

    ax = axes[1][1]
    labels, vals, cols = [], [], []
    for db in ("sqlite", "postgresql"):
        for k in ("socketify", "uvicorn"):
            v = _get(results, "persist", db, k, "acks_per_s")
            if v is not None:
                labels.append(f"{db}\n{k}")
                vals.append(v)
                cols.append(colors[k])
    ax.bar_label(ax.bar(range(len(vals)), vals, color=cols), fmt="%.0f", fontsize=8)
    for db, target, style in (("sqlite", 20000, "--"), ("postgresql", 10000, ":")):
        ax.axhline(target, color="red", ls=style, lw=1, label=f"target {db} ≥ {target:,}/s")
    ax.set_xticks(range(len(vals)), labels)
    ax.set_ylabel("acks/s (after commit)")
    ax.set_title("Messages persisted per second")
    ax.legend(fontsize=8)
    m = results["machine"]
    fig.suptitle(f"Parley chat core — {results.get('mode')} run {results.get('started_at')} — {m.get('nproc')}× "
                 f"{m.get('cpu_model')}; load avg {results.get('loadavg_start')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
