"""A picows WebSocket load generator for Parley (and the plain ``websockets`` baseline).

Runs as its own process (pin it to a core other than the server's) and reports on stdout, one
JSON object per line: ``{"event": "measure_start"}`` / ``"measure_end"`` around the measured
window (so the runner can read the server's CPU time at those moments), ``"warm"`` and
``"ready"`` in the idle scenario (it then waits for a line on stdin), and a final
``{"event": "result", ...}``.

Scenarios
- ``fanout``: ``--rooms`` rooms of ``--room-size`` connections. In Parley a room is one user's
  conversation and all ``--room-size`` connections belong to that user (every connection of a user
  follows its open conversations); one connection per room sends, keeping its share of the messages in
  flight (the next one goes out when its own copy comes back). Every delivery to every member
  (the sender's own copy included) counts; ``--inflight`` is swept (messages in flight over all rooms,
  one measured step each); latency is receive time minus the send time carried in
  the text.
- ``one2one``: ``--pairs`` conversations, each between a user (sender) and one connection of an
  agent subscribed to it (receiver); each pair sends one message, waits for its delivery to the
  agent, and sends again ``--period-ms`` after the previous send.
- ``persist``: ``--senders`` users with a conversation each and one connection each, ``--window``
  sends in flight each; counts ``ack`` frames (sent only after the commit) and their latency.
- ``idle``: ``--warm-conns`` authenticated connections, then (after ``go`` on stdin) ``--conns``
  more, then waits for ``done`` on stdin.

For the baseline (``--target baseline``) rooms are URL paths and there is no auth or ack.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

MARK = b"BENCH|"
now_ns = time.monotonic_ns
PAD = "x" * 40
ACK_PREFIX = b'{"type": "ack", "client_msg_id": "'


def emit(event: str, **kw: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **kw}) + "\n")
    sys.stdout.flush()


class Stats:
    def __init__(self) -> None:
        self.measuring = False
        self.deliveries = 0
        self.window_deliveries = 0
        self.lat: list[int] = []
        self.sent = 0
        self.window_sent = 0
        self.acks = 0
        self.window_acks = 0
        self.ack_lat: list[int] = []
        self.errors: dict[str, int] = {}
        self.disconnects = 0
        self.timeouts = 0
        self.last_delivery = 0
        self.max_gap = 0  # longest stretch with no delivery at all while measuring (ns)

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


ST = Stats()


class Conn(WSListener):
    """One client connection. Bench messages are recognised by a marker in the text and handled
    without JSON parsing; everything else is parsed and kept for the setup code."""

    def __init__(self) -> None:
        self.t: WSTransport | None = None
        self.inbox: list[dict[str, Any]] = []
        self.waiter: tuple[Callable[[dict[str, Any]], bool], asyncio.Future[dict[str, Any]]] | None = None
        self.role = "rx"  # rx | echo_sender | ack_sender | pair_tx | pair_rx
        self.count = True  # count bench deliveries to this connection
        self.window = 0
        self.inflight = 0
        self.stopping = False
        self.build: Callable[[], tuple[bytes, str]] | None = None
        self.pending: dict[str, int] = {}
        self.pair_future: asyncio.Future[int] | None = None
        self.echoes = 0  # own messages back while measuring (per-room fairness)
        self.closing = False
        self.closed = False

    # picows callbacks -------------------------------------------------------------------
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.t = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        if not self.closing:
            ST.disconnects += 1
        if self.waiter is not None and not self.waiter[1].done():
            self.waiter[1].set_exception(ConnectionError("disconnected"))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        mt = frame.msg_type
        if mt is not WSMsgType.TEXT:
            if mt is WSMsgType.CLOSE:
                with contextlib.suppress(Exception):
                    transport.send_close(frame.get_close_code())
                transport.disconnect()
            return
        data = frame.get_payload_as_bytes()
        i = data.find(MARK)
        if i >= 0:
            j = data.find(b"|", i + 6)
            sent = int(data[i + 6 : j])
            now = now_ns()
            role = self.role
            if self.count:
                ST.deliveries += 1
                if ST.measuring:
                    ST.window_deliveries += 1
                    ST.lat.append(now - sent)
                    if now - ST.last_delivery > ST.max_gap:
                        ST.max_gap = now - ST.last_delivery
                ST.last_delivery = now
            if role == "echo_sender":
                self.inflight -= 1
                if ST.measuring:
                    self.echoes += 1
                if not self.stopping:
                    self.send_next()
            elif role == "pair_rx":
                fut = self.pair_future
                if fut is not None and not fut.done():
                    fut.set_result(now - sent)
            return
        if data.startswith(ACK_PREFIX):
            ST.acks += 1
            if self.role == "ack_sender":
                k = len(ACK_PREFIX)
                cmid = data[k : data.find(b'"', k)].decode()
                t0 = self.pending.pop(cmid, None)
                if t0 is not None and ST.measuring:
                    ST.window_acks += 1
                    ST.ack_lat.append(now_ns() - t0)
                self.inflight -= 1
                if not self.stopping:
                    self.send_next()
            return
        try:
            obj = json.loads(data)
        except ValueError:
            ST.error("unparsable_frame")
            return
        if not isinstance(obj, dict):
            return
        typ = obj.get("type")
        if typ == "error":
            ST.error(str(obj.get("code")))
            cmid = obj.get("client_msg_id")
            if cmid and self.role in ("echo_sender", "ack_sender"):
                self.pending.pop(cmid, None)
                self.inflight -= 1
                if not self.stopping:
                    self.send_next()
        elif typ == "bye":
            ST.error("bye:" + str(obj.get("code")))
        if self.waiter is not None and not self.waiter[1].done() and self.waiter[0](obj):
            self.waiter[1].set_result(obj)
            self.waiter = None
            return
        if len(self.inbox) < 200:
            self.inbox.append(obj)

    # helpers ----------------------------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        assert self.t is not None
        self.t.send(WSMsgType.TEXT, data)

    def send_json(self, obj: dict[str, Any]) -> None:
        self.send_raw(json.dumps(obj).encode())

    def send_next(self) -> None:
        assert self.build is not None
        if self.closed:
            return
        data, cmid = self.build()
        if self.role == "ack_sender":
            self.pending[cmid] = now_ns()
        self.inflight += 1
        ST.sent += 1
        if ST.measuring:
            ST.window_sent += 1
        self.send_raw(data)

    async def expect(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        for k, obj in enumerate(self.inbox):
            if pred(obj):
                del self.inbox[k]
                return obj
        if self.closed:
            raise ConnectionError("disconnected")
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiter = (pred, fut)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self.waiter = None

    def close(self) -> None:
        self.closing = True
        if self.t is not None and not self.closed:
            with contextlib.suppress(Exception):
                self.t.disconnect()


def of_type(t: str, **match: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda o: o.get("type") == t and all(o.get(k) == v for k, v in match.items())


def is_fatal(o: dict[str, Any]) -> bool:
    return o.get("type") in ("bye",) or (o.get("type") == "error" and bool(o.get("fatal")))


# connecting ----------------------------------------------------------------------------------

async def connect(url: str) -> Conn:
    _t, c = await ws_connect(Conn, url, websocket_handshake_timeout=15, enable_auto_pong=True)
    assert isinstance(c, Conn)
    return c


async def parley_open(url: str, token: str) -> Conn:
    """Connect, hello, welcome, then ping/pong: the pong proves the server finished the
    connection's initial subscriptions (frames are handled in order)."""
    c = await connect(url)
    c.send_json({"type": "hello", "token": token})
    w = await c.expect(lambda o: o.get("type") == "welcome" or is_fatal(o), 20)
    if w.get("type") != "welcome":
        raise RuntimeError(f"hello refused: {w}")
    c.send_json({"type": "ping", "ref": "ready"})
    await c.expect(of_type("pong", ref="ready"), 20)
    return c


async def baseline_open(url: str) -> Conn:
    c = await connect(url)
    await c.expect(of_type("welcome"), 20)
    return c


async def start_conversation(c: Conn) -> str:
    c.send_json({"type": "conversation.start", "ref": "start"})
    o = await c.expect(lambda o: (o.get("type") == "conversation" and o.get("ref") == "start") or is_fatal(o)
                       or (o.get("type") == "error" and o.get("ref") == "start"), 20)
    if o.get("type") != "conversation":
        raise RuntimeError(f"conversation.start failed: {o}")
    return str(o["conversation"]["id"])


async def bounded_gather(factories: list[Callable[[], Any]], limit: int) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(f: Callable[[], Any]) -> Any:
        async with sem:
            return await f()

    return list(await asyncio.gather(*(one(f) for f in factories)))


class Api:
    def __init__(self, base_url: str, admin_key: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {admin_key}"},
                                      timeout=30, limits=httpx.Limits(max_connections=1))

    async def token(self, sub: str, role: str = "user", name: str | None = None) -> str:
        body: dict[str, Any] = {"sub": sub, "role": role, "ttl_s": 7200}
        if name:
            body["name"] = name
        r = await self.http.post("/v1/tokens", json=body)
        r.raise_for_status()
        return str(r.json()["token"])

    async def tokens(self, subs: list[str]) -> list[str]:
        # One at a time: 16 concurrent REST clients made Parley on socketify 0.0.31 hang requests and
        # then die (Fatal Python error in socketify's asgi_on_abort_handler); minting is setup anyway.
        return [await self.token(s, name=s) for s in subs]

    async def agent(self, name: str) -> str:
        r = await self.http.post("/v1/agents", json={"name": name, "email": f"{name}@bench.invalid",
                                                     "password": "bench-password-123"})
        r.raise_for_status()
        return str(r.json()["id"])

    async def human_only(self) -> int:
        """Unset the tenant's default bot, so conversations start ``queued`` (human-only) and the AI
        agent's runner answers none of the benchmark's messages: this measures the chat core."""
        r = await self.http.get("/v1/bots")
        r.raise_for_status()
        changed = 0
        for bot in r.json()["bots"]:
            if bot.get("is_default"):
                (await self.http.patch(f"/v1/bots/{bot['id']}", json={"is_default": False})).raise_for_status()
                changed += 1
        return changed

    async def aclose(self) -> None:
        await self.http.aclose()


def parley_builder(cid: str) -> Callable[[], tuple[bytes, str]]:
    head = '{"type":"send","conversation_id":"' + cid + '","client_msg_id":"'

    def build() -> tuple[bytes, str]:
        cmid = str(uuid.uuid4())
        return (head + cmid + '","text":"BENCH|' + str(now_ns()) + "|" + PAD + '"}').encode(), cmid

    return build


def baseline_builder() -> Callable[[], tuple[bytes, str]]:
    def build() -> tuple[bytes, str]:
        cmid = str(uuid.uuid4())
        return ('{"type":"send","client_msg_id":"' + cmid + '","text":"BENCH|' + str(now_ns()) + "|" + PAD
                + '"}').encode(), cmid

    return build


def pct(values: list[int], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k] / 1e6  # ns -> ms


def lat_summary(values: list[int]) -> dict[str, Any]:
    return {"n": len(values), "p50_ms": pct(values, 50), "p90_ms": pct(values, 90), "p99_ms": pct(values, 99),
            "max_ms": (max(values) / 1e6) if values else None}


def runq_wait_ns() -> int:
    """Time this process's main thread spent runnable but waiting for a CPU (other load)."""
    try:
        with open("/proc/self/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def reset_window() -> None:
    ST.window_deliveries = 0
    ST.window_sent = 0
    ST.window_acks = 0
    ST.lat = []
    ST.ack_lat = []
    ST.max_gap = 0
    ST.last_delivery = now_ns()


async def measure(warmup: float, duration: float, step: int = 0) -> dict[str, float]:
    await asyncio.sleep(warmup)
    reset_window()
    emit("measure_start", step=step)
    cpu0, t0, w0 = time.process_time(), time.monotonic(), runq_wait_ns()
    ST.measuring = True
    await asyncio.sleep(duration)
    ST.measuring = False
    t1, cpu1, w1 = time.monotonic(), time.process_time(), runq_wait_ns()
    emit("measure_end", step=step)
    return {"seconds": t1 - t0, "loadgen_cpu": (cpu1 - cpu0) / (t1 - t0),
            "loadgen_runq_wait": (w1 - w0) / 1e9 / (t1 - t0)}


async def drain(senders: list[Conn], expected: Callable[[], int], got: Callable[[], int], limit: float) -> None:
    for s in senders:
        s.stopping = True
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and got() < expected():
        await asyncio.sleep(0.05)


# scenarios -----------------------------------------------------------------------------------

async def scenario_fanout(a: argparse.Namespace, api: Api | None) -> dict[str, Any]:
    rooms: list[list[Conn]] = []
    t_setup = time.monotonic()
    if api is not None:
        tokens = await api.tokens([f"fan-{a.nonce}-{r}" for r in range(a.rooms)])
        firsts = [await parley_open(a.ws_url, tokens[r]) for r in range(a.rooms)]
        cids = [await start_conversation(c) for c in firsts]
        rest = await bounded_gather([lambda r=r: parley_open(a.ws_url, tokens[r])  # type: ignore[misc]
                                     for r in range(a.rooms) for _ in range(a.room_size - 1)], 64)
        for r in range(a.rooms):
            rooms.append([firsts[r], *rest[r * (a.room_size - 1):(r + 1) * (a.room_size - 1)]])
            firsts[r].build = parley_builder(cids[r])
    else:
        conns = await bounded_gather([lambda r=r: baseline_open(f"{a.ws_url}/r/fan{r}")  # type: ignore[misc]
                                      for r in range(a.rooms) for _ in range(a.room_size)], 64)
        for r in range(a.rooms):
            rooms.append(conns[r * a.room_size:(r + 1) * a.room_size])
            rooms[r][0].build = baseline_builder()
    setup_s = time.monotonic() - t_setup
    senders = [room[0] for room in rooms]
    for s in senders:
        s.role = "echo_sender"
    steps: list[dict[str, Any]] = []
    for k, total in enumerate(a.inflight):
        # Spread ``total`` messages in flight over the rooms (fewer senders than rooms at low load).
        for r, s in enumerate(senders):
            want = total // len(senders) + (1 if r < total % len(senders) else 0)
            while s.window < want:
                s.window += 1
                s.send_next()
        for s in senders:
            s.echoes = 0
        m = await measure(a.warmup, a.duration, step=k)
        lat = lat_summary(ST.lat)
        active = sorted(s.echoes for s in senders if s.window)
        steps.append({"step": k, "in_flight": total, "senders": sum(1 for s in senders if s.window), **m,
                      "deliveries_per_s": ST.window_deliveries / m["seconds"],
                      "messages_per_s": ST.window_sent / m["seconds"], "latency": lat,
                      "room_messages_min_max": [active[0], active[-1]] if active else None,
                      "longest_pause_ms": ST.max_gap / 1e6})
        if lat["p99_ms"] is None or lat["p99_ms"] > a.stop_p99_ms:
            break  # already past any latency target: more in flight only queues more
    await drain(senders, lambda: ST.sent * a.room_size, lambda: ST.deliveries, 5.0)
    expected = ST.sent * a.room_size
    out = {
        "rooms": a.rooms, "room_size": a.room_size, "connections": a.rooms * a.room_size,
        "setup_s": round(setup_s, 2), "steps": steps, "sent_total": ST.sent, "delivered_total": ST.deliveries,
        "missing_after_drain": max(0, expected - ST.deliveries),
    }
    for room in rooms:
        for c in room:
            c.close()
    return out


async def scenario_one2one(a: argparse.Namespace, api: Api | None) -> dict[str, Any]:
    pairs: list[tuple[Conn, Conn]] = []
    t_setup = time.monotonic()
    if api is not None:
        tokens = await api.tokens([f"one-{a.nonce}-{i}" for i in range(a.pairs)])
        agent_id = await api.agent(f"bench-agent-{a.nonce}")
        agent_token = await api.token(agent_id, role="agent", name="Bench agent")
        for i in range(a.pairs):
            u = await parley_open(a.ws_url, tokens[i])
            cid = await start_conversation(u)
            ag = await parley_open(a.ws_url, agent_token)
            ag.send_json({"type": "subscribe", "conversation_id": cid, "ref": "sub"})
            await ag.expect(of_type("subscribed", ref="sub"), 20)
            u.build = parley_builder(cid)
            pairs.append((u, ag))
    else:
        for i in range(a.pairs):
            u = await baseline_open(f"{a.ws_url}/r/pair{i}")
            ag = await baseline_open(f"{a.ws_url}/r/pair{i}")
            u.build = baseline_builder()
            pairs.append((u, ag))
    setup_s = time.monotonic() - t_setup
    loop = asyncio.get_running_loop()
    end = loop.time() + a.warmup + a.duration
    period = a.period_ms / 1000
    lat: list[int] = []

    async def run_pair(k: int, tx: Conn, rx: Conn) -> None:
        tx.role, tx.count = "pair_tx", False
        rx.role, rx.count = "pair_rx", False
        await asyncio.sleep(period * k / max(1, len(pairs)))  # spread the pairs over one period
        for _ in range(1_000_000):
            t0 = loop.time()
            if t0 >= end:
                return
            fut: asyncio.Future[int] = loop.create_future()
            rx.pair_future = fut
            measuring = ST.measuring
            assert tx.build is not None
            tx.send_raw(tx.build()[0])
            ST.sent += 1
            try:
                ns = await asyncio.wait_for(fut, 5.0)
                if measuring and ST.measuring:
                    lat.append(ns)
                    ST.window_sent += 1
            except TimeoutError:
                ST.timeouts += 1
            await asyncio.sleep(max(0.0, period - (loop.time() - t0)))

    tasks = [asyncio.create_task(run_pair(k, tx, rx)) for k, (tx, rx) in enumerate(pairs)]
    m = await measure(a.warmup, a.duration)
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    for tx, rx in pairs:
        tx.close()
        rx.close()
    return {"pairs": a.pairs, "period_ms": a.period_ms, "setup_s": round(setup_s, 2), **m,
            "messages_per_s": ST.window_sent / m["seconds"], "latency": lat_summary(lat),
            "timeouts": ST.timeouts}


async def scenario_persist(a: argparse.Namespace, api: Api | None) -> dict[str, Any]:
    if api is None:
        raise SystemExit("persist needs a Parley server")
    t_setup = time.monotonic()
    tokens = await api.tokens([f"per-{a.nonce}-{i}" for i in range(a.senders)])
    conns: list[Conn] = []
    for i in range(a.senders):
        c = await parley_open(a.ws_url, tokens[i])
        c.build = parley_builder(await start_conversation(c))
        c.role, c.count = "ack_sender", False
        conns.append(c)
    setup_s = time.monotonic() - t_setup
    for c in conns:
        for _ in range(a.window):
            c.send_next()
    m = await measure(a.warmup, a.duration)
    await drain(conns, lambda: ST.sent - sum(ST.errors.values()), lambda: ST.acks, 10.0)
    for c in conns:
        c.close()
    return {"senders": a.senders, "window": a.window, "setup_s": round(setup_s, 2), **m,
            "acks_per_s": ST.window_acks / m["seconds"], "ack_latency": lat_summary(ST.ack_lat),
            "sent_total": ST.sent, "acked_total": ST.acks}


async def read_stdin_line(timeout: float) -> str:
    loop = asyncio.get_running_loop()
    line = await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), timeout)
    return line.strip()


async def scenario_idle(a: argparse.Namespace, api: Api | None) -> dict[str, Any]:
    total = a.warm_conns + a.conns
    t_setup = time.monotonic()
    if api is not None:
        users = max(1, min(a.idle_users, total))
        tokens = await api.tokens([f"idle-{a.nonce}-{i}" for i in range(users)])
        mint_s = time.monotonic() - t_setup

        def opener(i: int) -> Callable[[], Any]:
            return lambda: parley_open(a.ws_url, tokens[i % users])
    else:
        mint_s = 0.0

        def opener(i: int) -> Callable[[], Any]:
            return lambda: baseline_open(f"{a.ws_url}/r/idle{i}")

    conns: list[Conn] = list(await bounded_gather([opener(i) for i in range(a.warm_conns)], 32))
    await asyncio.sleep(1.0)
    emit("warm", connections=len(conns))
    if await read_stdin_line(120) != "go":
        raise SystemExit("runner did not say go")
    t_conn = time.monotonic()
    conns += await bounded_gather([opener(i) for i in range(a.warm_conns, total)], 64)
    connect_s = time.monotonic() - t_conn
    open_now = sum(1 for c in conns if not c.closed)
    emit("ready", connections=open_now)
    await read_stdin_line(300)
    still = sum(1 for c in conns if not c.closed)
    for c in conns:
        c.close()
    return {"warm_connections": a.warm_conns, "connections": a.conns, "mint_s": round(mint_s, 2),
            "users": a.idle_users if api is not None else a.warm_conns + a.conns,
            "connect_s": round(connect_s, 2), "open_at_ready": open_now, "open_at_end": still,
            "setup_s": round(time.monotonic() - t_setup, 2)}


SCENARIOS = {"fanout": scenario_fanout, "one2one": scenario_one2one, "persist": scenario_persist,
             "idle": scenario_idle}


async def amain(a: argparse.Namespace) -> dict[str, Any]:
    api = None
    if a.target == "parley":
        key = (a.data_dir / "demo-admin-key.txt").read_text().strip() if a.admin_key is None else a.admin_key
        api = Api(f"http://127.0.0.1:{a.port}", key)
        a.ws_url = f"ws://127.0.0.1:{a.port}/v1/ws"
    else:
        a.ws_url = f"ws://127.0.0.1:{a.port}"
    try:
        if api is not None and not a.keep_bot:
            await api.human_only()
        res = await asyncio.wait_for(SCENARIOS[a.scenario](a, api), a.deadline)
    finally:
        if api is not None:
            await api.aclose()
    res.update({"errors": ST.errors, "unexpected_disconnects": ST.disconnects})
    await asyncio.sleep(0.2)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description="picows load generator for Parley's chat benchmark")
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--target", choices=["parley", "baseline"], default="parley")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--data-dir", type=lambda s: __import__("pathlib").Path(s), default=None,
                    help="the server's data dir (for demo-admin-key.txt)")
    ap.add_argument("--admin-key", default=None)
    ap.add_argument("--rooms", type=int, default=10)
    ap.add_argument("--room-size", type=int, default=100)
    ap.add_argument("--window", type=int, default=4, help="persist: sends in flight per sender")
    ap.add_argument("--inflight", type=lambda v: [int(x) for x in v.split(",")], default=[2, 10, 40, 160],
                    help="fanout: messages in flight in total (spread over the rooms), one measured step each, "
                         "ascending")
    ap.add_argument("--stop-p99-ms", type=float, default=250.0, help="fanout: stop the sweep past this p99")
    ap.add_argument("--idle-users", type=int, default=50, help="idle: distinct users the connections belong to")
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--period-ms", type=float, default=50.0)
    ap.add_argument("--senders", type=int, default=32)
    ap.add_argument("--conns", type=int, default=5000)
    ap.add_argument("--warm-conns", type=int, default=100)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--deadline", type=float, default=240.0, help="hard limit for the whole scenario")
    ap.add_argument("--nonce", default=uuid.uuid4().hex[:8])
    ap.add_argument("--no-uvloop", action="store_true")
    ap.add_argument("--keep-bot", action="store_true",
                    help="leave the tenant's default bot on (the AI agent then answers every user message)")
    a = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop
    except ImportError:
        uvloop = None
    runner = uvloop.run if (uvloop is not None and not a.no_uvloop) else asyncio.run
    try:
        res = runner(amain(a))
    except Exception as exc:  # noqa: BLE001 (the load generator reports any failure as its result line)
        emit("result", ok=False, error=f"{type(exc).__name__}: {exc}", errors=ST.errors,
             unexpected_disconnects=ST.disconnects)
        os._exit(1)
    emit("result", ok=True, **res)
    sys.stdout.flush()
    os._exit(0)  # skip closing thousands of sockets one by one


if __name__ == "__main__":
    main()
