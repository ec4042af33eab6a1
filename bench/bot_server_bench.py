"""Time the server adds before the bot's first token reaches the user, measured through the real
server, side by side with a bare ``ChatOpenAI.astream`` call against the same local model in the
same run. Writes ``bench/results/bot_server.md``.

    .venv/bin/python bench/bot_server_bench.py            # 10k chunks, 200 samples, uvicorn
    .venv/bin/python bench/bot_server_bench.py --quick    # 1k chunks, 30 samples

How it is measured:

* the model is ``bot_bench.py``'s instant OpenAI-compatible SSE mock (its own process on
  127.0.0.1, answers every POST at once with a 6-token stream);
* ``parley serve`` runs as a subprocess (``tests/support/live.py``) with ``PARLEY_LLM_BASE_URL``
  pointing at the mock and flood limits raised; its data dir is kept under
  ``/tmp/parley-bench-cache`` so the synthetic FAQ knowledge base (one chunk per question/answer
  pair, uploaded in batches through ``POST /v1/knowledge-bases/{kb}/documents``) is built once and
  reused; it is attached to the tenant's default bot;
* each sample: a user opens a fresh conversation over the WebSocket, then the client timestamps
  sending a ``send`` frame (a question copied from the FAQ, so retrieval finds evidence and the
  bot calls the model) and receiving the first ``message.delta`` of the bot's reply; it then waits
  for the bot's final message before the next sample (one request in flight);
* interleaved with those, the same process times a bare ``ChatOpenAI.astream`` (built like the
  server builds its model) from the call to the first non-empty chunk;
* added by the server = server p50 (p99) minus bare p50 (p99); percentiles of the paired
  differences are shown as well.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bot_bench import handle, pct  # noqa: E402

from bots.config import LLMConfig  # noqa: E402
from bots.llm import build_chat_model  # noqa: E402
from server.core.settings import Settings  # noqa: E402
from tests.support.live import LiveServer, free_port  # noqa: E402
from tests.support.ws import WsClient  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "bot_server.md"
DEFAULT_CACHE = Path("/tmp/parley-bench-cache")
TARGET_P50_MS = 10.0
TARGET_P99_MS = 30.0
BATCH = 500  # FAQ pairs per uploaded document
SAMPLE_TIMEOUT_S = 20.0

PRODUCTS = [f"{series} {num}" for series in (
    "Aero", "Barista", "Cafe", "Duo", "Echo", "Flux", "Glide", "Halo", "Ion", "Jet",
    "Kiva", "Lumo", "Mira", "Nova", "Orbit", "Pico", "Quill", "Rio", "Sola", "Terra",
) for num in ("One", "Two", "Pro", "Max", "Mini")]
COMPONENTS = [
    "milk frother", "grinder burrs", "water tank", "drip tray", "steam wand", "portafilter", "brew group",
    "bean hopper", "descaling program", "pressure gauge", "touch display", "wifi module", "pump",
    "heating element", "cup warmer", "filter basket", "gasket", "power cable", "firmware", "timer",
]
ACTIONS = [
    "clean", "replace", "reset", "calibrate", "update", "remove", "install", "adjust", "descale", "check",
    "order a spare for", "register", "pair", "repair", "lubricate", "drain", "inspect", "unlock",
    "set up", "troubleshoot",
]
STEPS = [
    "switch the machine off and let it cool for ten minutes", "open the service hatch on the left side",
    "hold the power and steam buttons together for three seconds", "rinse the part under warm water",
    "use the tool supplied in the accessory box", "follow the prompts on the display",
    "tighten the two screws a quarter turn", "run one empty brew cycle afterwards",
    "check that the indicator turns green", "open the Brightbrew app and choose Maintenance",
]


def faq_pairs(n: int) -> list[dict[str, str]]:
    """``n`` distinct synthetic question/answer pairs, the same on every run."""
    combos = [(p, c, a) for p in PRODUCTS for c in COMPONENTS for a in ACTIONS]
    rng = random.Random(4)
    rng.shuffle(combos)
    if n > len(combos):
        raise SystemExit(f"at most {len(combos)} pairs")
    out = []
    for i, (product, component, action) in enumerate(combos[:n]):
        s1, s2 = rng.sample(STEPS, 2)
        out.append({
            "question": f"How do I {action} the {component} on the Brightbrew {product}?",
            "answer": f"To {action} the {component} on the Brightbrew {product}, {s1}, then {s2}. "
                      f"If it still does not work, quote service code BB-{i:05d} to support.",
        })
    return out


# -- setup --------------------------------------------------------------------------------------


def start_mock() -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve-mock"], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line.isdigit():
        proc.kill()
        raise RuntimeError(f"mock model did not start: {line!r}")
    return proc, int(line)


def ensure_kb(srv: LiveServer, n: int) -> tuple[str, int, float | None]:
    """The FAQ knowledge base of ``n`` pairs (built on the first run, reused later), attached to
    the default bot. Returns (kb id, chunk count, build seconds or None when reused)."""
    name = f"bench-faq-{n}"
    pairs = faq_pairs(n)
    with srv.admin() as c:
        c.timeout = httpx.Timeout(60)
        kbs = c.get("/v1/knowledge-bases").json()["knowledge_bases"]
        kb = next((k for k in kbs if k["name"] == name), None)
        if kb is None:
            r = c.post("/v1/knowledge-bases", json={"name": name})
            r.raise_for_status()
            kb = r.json()
        kb_id = str(kb["id"])
        docs = c.get(f"/v1/knowledge-bases/{kb_id}/documents").json()["documents"]
        have = {d["title"]: d for d in docs if d["status"] != "failed"}
        pending: list[str] = []
        uploaded = 0
        t0 = time.perf_counter()
        for start in range(0, n, BATCH):
            title = f"bench batch {start // BATCH:03d}"
            doc = have.get(title)
            if doc is None:
                r = c.post(f"/v1/knowledge-bases/{kb_id}/documents",
                           json={"title": title, "faq": pairs[start:start + BATCH]})
                r.raise_for_status()
                doc = r.json()["document"]
                uploaded += 1
            if doc["status"] != "ready":
                pending.append(str(doc["id"]))
        if pending:
            print(f"building knowledge base {name}: {len(pending)} documents of up to {BATCH} pairs "
                  f"({uploaded} uploaded now)", flush=True)
        deadline = time.monotonic() + 3600
        last = ""
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError("ingestion did not finish within an hour")
            states = [c.get(f"/v1/knowledge-bases/{kb_id}/documents/{d}").json()["document"] for d in pending]
            failed = [s for s in states if s["status"] == "failed"]
            if failed:
                raise RuntimeError(f"ingestion failed: {failed[0]}")
            pending = [s["id"] for s in states if s["status"] != "ready"]
            note = f"  {len(pending)} documents left ({time.perf_counter() - t0:.0f} s)"
            if note != last and pending:
                print(note, flush=True)
                last = note
            if pending:
                time.sleep(2.0)
        build_s = time.perf_counter() - t0 if uploaded else None
        docs = c.get(f"/v1/knowledge-bases/{kb_id}/documents").json()["documents"]
        chunks = sum(int(d["chunk_count"] or 0) for d in docs if d["status"] == "ready")
        bots = c.get("/v1/bots").json()["bots"]
        default = next(b for b in bots if b["is_default"])
        if default.get("knowledge_base_id") != kb_id:
            c.patch(f"/v1/bots/{default['id']}", json={"knowledge_base_id": kb_id}).raise_for_status()
    return kb_id, chunks, build_s


# -- measuring ----------------------------------------------------------------------------------


async def server_sample(c: WsClient, question: str, timeout: float = SAMPLE_TIMEOUT_S) -> tuple[float | None, str]:
    """(seconds from sending the question to the first ``message.delta``, outcome)."""
    cid = await c.start()
    frame = json.dumps({"type": "send", "conversation_id": cid, "client_msg_id": str(uuid.uuid4()),
                        "text": question})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    t0 = time.perf_counter()
    await c.ws.send(frame)
    first: float | None = None
    while True:
        f = await c.recv(max(0.01, deadline - loop.time()))
        if f.get("conversation_id") != cid:
            continue
        if f["type"] == "message.delta" and first is None:
            first = time.perf_counter() - t0
        elif f["type"] == "message" and f["message"]["sender"]["kind"] == "bot":
            return first, "answer" if first is not None else f"bot message without deltas ({f['message']['kind']})"
        elif f["type"] == "conversation.updated" and f["conversation"]["status"] != "bot":
            return first, f"handed off ({f['conversation']['status']})"
        elif f["type"] == "error":
            return first, f"error {f.get('code')}"


async def measure(srv: LiveServer, kb_id: str, questions: list[str], warmup: list[str],
                  llm: LLMConfig) -> dict[str, Any]:
    model = build_chat_model(llm)  # per event loop: the SDK's connection pool belongs to one loop

    async def bare() -> float:
        start = time.perf_counter()
        first = None
        async for chunk in model.astream(questions[0]):
            if first is None and chunk.content:
                first = time.perf_counter() - start
        assert first is not None
        return first

    users_per = 25
    client: WsClient | None = None
    outcomes: dict[str, int] = {}

    async def connect(i: int) -> WsClient:
        token = await asyncio.to_thread(srv.token, f"bench-user-{uuid.uuid4().hex[:8]}-{i}")
        return await WsClient.connect(srv.ws_url, token)

    try:
        # Warm-up: the first search builds the keyword index over the whole knowledge base.
        client = await connect(0)
        for j, q in enumerate(warmup):
            first, outcome = await server_sample(client, q, 180.0 if j == 0 else SAMPLE_TIMEOUT_S)
            if first is None:
                raise RuntimeError(f"warm-up question got no streamed answer: {outcome} ({q!r})")
        for _ in range(30):
            await bare()

        srv_s: list[float] = []
        bare_s: list[float] = []
        paired: list[float] = []
        for i, q in enumerate(questions):
            if i and i % users_per == 0:
                await client.close()
                client = await connect(i)
            b = s = None
            if i % 2:
                b = await bare()
            s, outcome = await server_sample(client, q)
            if not i % 2:
                b = await bare()
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            bare_s.append(b)
            if s is not None:
                srv_s.append(s)
                paired.append(s - b)
    finally:
        if client is not None:
            await client.close()

    # Context: the retrieval alone through REST (HTTP round trip included), same questions.
    search_s: list[float] = []
    async with httpx.AsyncClient(base_url=srv.url, headers={"Authorization": f"Bearer {srv.admin_key}"},
                                 timeout=30) as http:
        for q in questions[: min(50, len(questions))]:
            t0 = time.perf_counter()
            r = await http.get(f"/v1/knowledge-bases/{kb_id}/search", params={"q": q, "k": 4})
            search_s.append(time.perf_counter() - t0)
            r.raise_for_status()
    return {"server": srv_s, "bare": bare_s, "paired": paired, "outcomes": outcomes, "search": search_s}


# -- main ---------------------------------------------------------------------------------------


async def serve_mock() -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1k chunks and 30 samples")
    ap.add_argument("--chunks", type=int, default=None, help="FAQ pairs (= chunks); default 10000, 1000 quick")
    ap.add_argument("--n", type=int, default=None, help="measured questions per server; default 200, 30 quick")
    ap.add_argument("--servers", default="uvicorn", help="comma-separated: uvicorn, socketify")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_CACHE, help="kept between runs")
    ap.add_argument("--serve-mock", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_mock:
        asyncio.run(serve_mock())
        return
    chunks = args.chunks or (1000 if args.quick else 10_000)
    n = args.n or (30 if args.quick else 200)
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    load_start = os.getloadavg()
    started = dt.datetime.now(dt.UTC)

    pairs = faq_pairs(chunks)
    rng = random.Random(7)
    picked = rng.sample(range(chunks), min(chunks, n + 10))
    warmup = [pairs[i]["question"] for i in picked[:10]]
    questions = [pairs[i]["question"] for i in picked[10:]]
    while len(questions) < n:
        questions.append(pairs[rng.randrange(chunks)]["question"])

    mock, port = start_mock()
    base_url = f"http://127.0.0.1:{port}/v1"
    env = {
        "PARLEY_LLM_BASE_URL": base_url, "PARLEY_LLM_API_KEY": "bench", "PARLEY_LLM_MODEL": "mock",
        "PARLEY_DEMO_KNOWLEDGE": "false",
        "PARLEY_RATE_PER_CONNECTION": "1000", "PARLEY_BURST_PER_CONNECTION": "1000",
        "PARLEY_RATE_PER_USER": "1000", "PARLEY_BURST_PER_USER": "1000",
        "PARLEY_MAX_PENDING_HANDSHAKES_PER_IP": "100000",
    }
    defaults = Settings(_env_file=None)  # the server's own model settings, for the bare call
    llm = LLMConfig(base_url=base_url, api_key="bench", model="mock", timeout_s=defaults.llm_timeout_s,
                    max_retries=defaults.llm_max_retries)
    results: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    kb_chunks = 0
    build_s: float | None = None
    try:
        for kind in kinds:
            srv = LiveServer(kind, free_port(), args.data_dir, env)
            print(f"starting parley serve --server {kind} (data dir {args.data_dir})", flush=True)
            srv.start(timeout=180)
            try:
                kb_id, kb_chunks, built = ensure_kb(srv, chunks)
                build_s = built if built is not None else build_s
                print(f"knowledge base {kb_id}: {kb_chunks} chunks"
                      + (f" (built in {built:.0f} s)" if built is not None else " (reused)"), flush=True)
                print(f"measuring {n} questions on {kind} ...", flush=True)
                results[kind] = asyncio.run(measure(srv, kb_id, questions, warmup, llm))
            except Exception as exc:  # noqa: BLE001 (one server failing must not lose the other's figures)
                print(f"{kind} failed: {exc!r}\n{srv.log()}", file=sys.stderr, flush=True)
                failures[kind] = f"{type(exc).__name__}: {exc}"[:300]
            finally:
                srv.stop()
            if kind not in failures:
                srv.log_path.unlink(missing_ok=True)
    finally:
        mock.terminate()
        try:
            mock.wait(10)
        except subprocess.TimeoutExpired:
            mock.kill()
    load_end = os.getloadavg()
    write_report(results, chunks=kb_chunks, n=n, build_s=build_s, started=started,
                 load=(load_start, load_end), quick=args.quick, failures=failures)


def write_report(results: dict[str, dict[str, Any]], *, chunks: int, n: int, build_s: float | None,
                 started: dt.datetime, load: tuple[tuple[float, ...], tuple[float, ...]], quick: bool,
                 failures: dict[str, str]) -> None:
    ms = 1000.0

    def p(xs: list[float], q: float) -> str:
        return f"{pct(xs, q) * ms:.2f}" if xs else "n/a"

    def verdict(value: float, target: float) -> str:
        return "met" if value <= target else "**missed**"

    lines = [
        "# Bot through the server: time to first token",
        "",
        f"{started:%Y-%m-%d %H:%M} UTC{' (--quick)' if quick else ''}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.machine()}; load average at the start "
        f"{' / '.join(f'{x:.1f}' for x in load[0])}, at the end {' / '.join(f'{x:.1f}' for x in load[1])} "
        "(shared machine, not isolated).",
        "",
        f"Instant local OpenAI-compatible mock model (`bot_bench.py`'s SSE server, own process, 127.0.0.1); "
        f"`parley serve` as a subprocess, SQLite, in-process fan-out; knowledge base of {chunks:,} chunks "
        f"(synthetic FAQ, one chunk per pair, uploaded through the REST API"
        + (f", built in {build_s:.0f} s" if build_s is not None else ", reused from the cache dir") + ") "
        f"attached to the default bot. {n} questions per server (copied from the FAQ, so retrieval finds "
        "evidence), each in a fresh conversation, after 10 warm-up questions; one question in flight. "
        "Server: client timestamps of sending the `send` frame and receiving the first `message.delta`. "
        "Bare: `ChatOpenAI.astream` built like the server's model, call to first non-empty chunk, "
        "interleaved with the server samples in the same process.",
        "",
        "| server | path | p50 ms | p99 ms | target |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    summary = []
    for kind, r in results.items():
        srv, bare, paired = r["server"], r["bare"], r["paired"]
        lines.append(f"| {kind} | bare `ChatOpenAI.astream` → first token | {p(bare, 50)} | {p(bare, 99)} | |")
        lines.append(f"| {kind} | WebSocket `send` → first `message.delta` | {p(srv, 50)} | {p(srv, 99)} | |")
        if srv:
            a50 = (pct(srv, 50) - pct(bare, 50)) * ms
            a99 = (pct(srv, 99) - pct(bare, 99)) * ms
            d50, d99 = statistics.median(paired) * ms, pct(paired, 99) * ms
            # Judged on the larger of the two estimates: a noisy bare p99 can make the first one small.
            lines.append(f"| {kind} | **added by the server** (difference of percentiles) | **{a50:.2f}** | "
                         f"**{a99:.2f}** | p50 ≤ {TARGET_P50_MS:.0f} ms: {verdict(max(a50, d50), TARGET_P50_MS)}; "
                         f"p99 ≤ {TARGET_P99_MS:.0f} ms: {verdict(max(a99, d99), TARGET_P99_MS)} |")
            lines.append(f"| {kind} | added by the server (percentiles of paired differences) | "
                         f"{d50:.2f} | {d99:.2f} | |")
            summary.append((kind, a50, a99))
        lines.append(f"| {kind} | context: retrieval alone, REST `GET …/search` (HTTP included) | "
                     f"{p(r['search'], 50)} | {p(r['search'], 99)} | |")
    lines.append("")
    for kind, r in results.items():
        outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(r["outcomes"].items()))
        lines.append(f"- {kind} outcomes: {outcomes}.")
    for kind, why in failures.items():
        lines.append(f"- {kind}: no figures, the run failed ({why}).")
    lines += [
        "",
        f"Target (QUALITY.md): time added before the first token, p50 ≤ {TARGET_P50_MS:.0f} ms, "
        f"p99 ≤ {TARGET_P99_MS:.0f} ms (judged on the larger of the two estimates of the added time).",
        "What \"added\" covers: the frame's parse and rate limit, storing the message and its outbox row,",
        "waking and claiming in the bot runner, loading the conversation, the handoff policy, retrieval",
        "(embedding the question with MiniLM on the CPU, Chroma, BM25, fusion), the prompt, the stream",
        "guard (which holds back text that could start a canary, a tag or a link), publishing the delta",
        "on the bus and the WebSocket write; the server's model request also carries the retrieved",
        "passages, the bare one only the question. Rerun with `.venv/bin/python bench/bot_server_bench.py`.",
    ]
    text = "\n".join(lines) + "\n"
    RESULTS.write_text(text, encoding="utf-8")
    print()
    print(text)


if __name__ == "__main__":
    main()
