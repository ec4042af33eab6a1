"""Fan-out and its failure modes: a resume racing a publish, a slow consumer, and two nodes
sharing PostgreSQL and Redis while Redis goes away and comes back. On uvicorn (Python
fan-out, bounded send queues) with in-process servers (``tests/support/inproc.py``) so a test
can look inside them; then the same on socketify (uWS native topics, the default server) with
``parley serve`` subprocesses.

Redis is reached through a TCP proxy the test controls, so "Redis is down" affects only these
two nodes, never the real Redis that other tests use."""

import asyncio
import contextlib
import json
import shutil
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import REDIS_URL, create_pg_database, drop_pg_database, need
from tests.support.history import History, Member, Pipe, db_messages
from tests.support.inproc import FAST, FAST_ENV, InProcServer, TcpProxy, make_settings
from tests.support.live import LiveServer, free_port

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:server")


def _user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcServer]:
    # Small send queues (slow consumers show up fast) and replay batches that fit in them.
    srv = InProcServer(make_settings(tmp_path_factory.mktemp("fanout"), send_queue_max=50, replay_batch=20, **FAST))
    with srv:
        yield srv


class _SlowPublish:
    """Delays the bus's publish of one conversation's frames, as a slow Redis round trip does."""

    def __init__(self, srv: InProcServer, conversation_id: str, delay: float) -> None:
        self.bus = srv.app.state.bus
        self.cid = conversation_id
        self.delay = delay

    def __enter__(self) -> "_SlowPublish":
        original: Callable[[str, str], Awaitable[None]] = self.bus.publish

        async def publish(topic: str, data: str) -> None:
            if topic.endswith(self.cid) and '"type": "message"' in data:
                await asyncio.sleep(self.delay)
            await original(topic, data)

        self.bus.publish = publish
        return self

    def __exit__(self, *exc: object) -> None:
        del self.bus.publish  # back to the class's method


async def test_resume_racing_a_publish_delivers_nothing_twice(node: InProcServer) -> None:
    """Regression (fixed in ad8ac59): a resume whose replay already read a committed message
    that is published only after the replay ended got it twice."""
    h = History()
    token = node.token(_user("race"))
    writer = await Pipe.open(node.ws_url, token, h, "writer")
    cid, base = await writer.quiet_conversation()
    member = Member(h, "device", node.ws_url, token, {cid: base})
    h.expect_complete("device", cid, base)
    with _SlowPublish(node, cid, 0.5):
        # Committed and acked at once; its publish is on its way (0.5 s, like a slow Redis).
        assert (await writer.send(cid, str(uuid.uuid4()), "in flight"))["type"] == "ack"
        await member.connect()  # the replay reads the committed row
        await asyncio.sleep(1.0)  # ... and then the publish arrives
    await member.disconnect()
    await writer.close()
    h.check(await db_messages(node.settings.resolved_database_url(), [cid])).assert_ok()


# ---------------------------------------------------------------------------------------------
# Slow consumer
# ---------------------------------------------------------------------------------------------


async def _stalled_socket(url: str, port: int) -> Any:
    """A client whose kernel receive buffer is tiny and whose library stops reading after a
    few frames: once it stops calling recv(), the server's writes back up."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return await websockets.connect(url, sock=sock, max_size=2**22, max_queue=2, ping_interval=None,
                                    open_timeout=10, close_timeout=2)


class SlowScenario:
    """A writer sends ``n`` messages of ~48 KiB on the wire (emoji are \\u-escaped as
    surrogate pairs, 12 bytes each) to a conversation with a fast reader and a reader that
    stopped reading: far more than the kernel buffers plus the 50-frame send queue can hold."""

    def __init__(self, node: InProcServer, n: int) -> None:
        self.node, self.n = node, n
        self.h = History()
        self.acked_at: dict[int, float] = {}
        self.peak = 0
        self.told: list[dict[str, Any]] = []
        self.ended = "silence"

    async def run(self) -> "SlowScenario":
        node, h = self.node, self.h
        self.token = node.token(_user("slow"))
        self.writer = await Pipe.open(node.ws_url, self.token, h, "writer")
        self.cid, self.base = cid, base = await self.writer.quiet_conversation()
        self.fast = Member(h, "fast", node.ws_url, self.token, {cid: base})
        await self.fast.connect()
        h.expect_complete("fast", cid, base)
        h.expect_complete("slow", cid, base)
        self.slow_ws = await _stalled_socket(node.ws_url, node.port)
        await self.slow_ws.send(json.dumps({"type": "hello", "token": self.token, "resume": {cid: base}}))
        welcome = json.loads(await self.slow_ws.recv())
        assert json.loads(await self.slow_ws.recv())["type"] == "subscribed"
        self.slow_session = h.open("slow", {cid: base})
        self.server_side = node.app.state.gateway.sessions[welcome["connection_id"]]
        text = "😀" * 3990
        for i in range(self.n):
            reply = await self.writer.send(cid, str(uuid.uuid4()), f"{i} {text}")
            assert reply["type"] == "ack", reply
            self.acked_at[int(reply["seq"])] = time.monotonic()
            if self.server_side.conn is not None:
                self.peak = max(self.peak, self.server_side.conn.queue.qsize())
        self.last = max(self.acked_at)
        return self

    async def slow_reads_again(self, silence: float) -> None:
        """The stalled reader reads what reached it, until the server closes or goes quiet."""
        try:
            while True:
                frame = json.loads(await asyncio.wait_for(self.slow_ws.recv(), silence))
                self.h.receive(self.slow_session, frame)
                if frame["type"] in ("error", "bye"):
                    self.told.append(frame)
        except websockets.ConnectionClosed as exc:
            self.ended = repr(exc)
        except TimeoutError:
            pass
        self.h.close(self.slow_session)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.slow_ws.close(), 3)
        await self.fast.disconnect()
        await self.writer.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_slow_consumer_is_cut_off_told_why_others_flow_and_it_catches_up(node: InProcServer) -> None:
    """uvicorn (Python fan-out, send_queue_max=50 here). socketify's native fan-out bypasses
    these queues and relies on uWS's own backpressure limit (serving.py); not covered here.
    Regression (fixed in ad8ac59): the slow consumer was never told why nor disconnected, and
    its session stayed registered, blocked in receive()."""
    sc = await SlowScenario(node, 200).run()
    cid = sc.cid

    # Others are unaffected: the fast reader got everything live, in its first session, in time.
    await sc.fast.wait(lambda: sc.fast.cursors[cid] >= sc.last, 20)
    assert sc.fast.connects == 1
    lags = [t - sc.acked_at[seq] for t, _c, seq in sc.fast.live if seq in sc.acked_at]
    assert len(lags) == 200
    assert max(lags) < 3.0, f"the fast reader lagged {max(lags):.2f}s behind the acks"

    # Its memory is bounded: the queue never grew past its limit; the session was cut off.
    assert sc.peak <= node.settings.send_queue_max
    assert sc.server_side.conn is not None and sc.server_side.conn.overflowed
    assert 'parley_errors_total{code="slow_consumer"}' in httpx.get(node.url + "/metrics").text

    # It reads again: what reached it, then why it was cut off (PROTOCOL.md: an error or bye
    # frame before every close the server starts), then the close; the session is gone.
    await sc.slow_reads_again(silence=5.0)
    assert any(f["type"] == "error" and f["code"] == "slow_consumer" for f in sc.told), (sc.told, sc.ended)
    assert any(f["type"] == "bye" and f["reconnect"] is True for f in sc.told), (sc.told, sc.ended)
    assert "ConnectionClosed" in sc.ended
    assert sc.server_side.id not in node.app.state.gateway.sessions

    # It resumes from the last seq it has and catches up from the database: no gap, no duplicate.
    got = sc.h.last_seq("slow", cid)
    assert got < sc.last, "the stalled reader was expected to miss the tail"
    slow = Member(sc.h, "slow", node.ws_url, sc.token, {cid: got or sc.base})
    await slow.catch_up({cid: sc.last})
    await asyncio.sleep(0.2)
    await slow.disconnect()
    await sc.close()
    sc.h.check(await db_messages(node.settings.resolved_database_url(), [cid]), require_all_acked=True).assert_ok()


async def test_resume_of_a_backlog_larger_than_the_send_queue_catches_up(tmp_path: Path) -> None:
    """send_queue_max=100 with the default replay_batch: a reader resuming 150 messages.
    Regression (fixed in ad8ac59): the replay offered a whole batch without waiting for room,
    so the resuming client was cut off as a slow consumer, again on every retry."""
    with InProcServer(make_settings(tmp_path, send_queue_max=100, **FAST)) as srv:
        h = History()
        token = srv.token(_user("backlog"))
        writer = await Pipe.open(srv.ws_url, token, h, "writer")
        cid, base = await writer.quiet_conversation()
        await _send_all(writer, cid, 150, "backlog")
        reader = Member(h, "reader", srv.ws_url, token, {cid: base})
        h.expect_complete("reader", cid, base)
        try:
            await reader.catch_up({cid: base + 150}, timeout=10)
        finally:
            await reader.disconnect()
            await writer.close()
        assert not [f for f in reader.frames if f["type"] in ("error", "bye")], reader.frames
        h.check(await db_messages(srv.settings.resolved_database_url(), [cid])).assert_ok()


# ---------------------------------------------------------------------------------------------
# Two nodes, one PostgreSQL, one Redis (behind a proxy the test can switch off)
# ---------------------------------------------------------------------------------------------


class Cluster:
    """Two nodes (in-process, or ``parley serve`` subprocesses) on one database and one Redis."""

    def __init__(self, a: InProcServer | LiveServer, b: InProcServer | LiveServer, proxy: TcpProxy,
                 database_url: str) -> None:
        self.a, self.b, self.proxy, self.database_url = a, b, proxy, database_url


def _redis_proxy() -> TcpProxy:
    import redis

    try:
        ok = bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        ok = False
    need("Redis", ok)
    host, port = REDIS_URL.split("//", 1)[1].split("/", 1)[0].split(":")
    proxy = TcpProxy(host, int(port))
    proxy.up()
    return proxy


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    proxy = _redis_proxy()
    url = asyncio.run(create_pg_database())
    redis_url = f"redis://127.0.0.1:{proxy.port}/0"
    dir_a: Path = tmp_path_factory.mktemp("node-a")
    dir_b: Path = tmp_path_factory.mktemp("node-b")
    a = InProcServer(make_settings(dir_a, url, redis_url=redis_url, **FAST))
    b = InProcServer(make_settings(dir_b, url, redis_url=redis_url, **FAST))
    try:
        a.start()
        shutil.copy(dir_a / "demo-admin-key.txt", dir_b / "demo-admin-key.txt")  # one tenant, two nodes
        shutil.copy(dir_a / "secret.key", dir_b / "secret.key")  # nodes share the key for secrets at rest
        b.start()
        yield Cluster(a, b, proxy, url)
    finally:
        b.stop()
        a.stop()
        proxy.close()
        asyncio.run(drop_pg_database(url))


async def _send_all(writer: Pipe, cid: str, n: int, label: str) -> list[float]:
    times = []
    for i in range(n):
        t0 = time.monotonic()
        reply = await writer.send(cid, str(uuid.uuid4()), f"{label} {i}")
        assert reply["type"] == "ack", reply
        times.append(time.monotonic() - t0)
    return times


async def _redis_outage_scenario(c: Cluster) -> tuple[History, Member, Pipe, str, int, int, float]:
    """Writer on node A, subscriber on node B: 20 messages, Redis down, 10 messages, Redis
    back. Returns the history, the subscriber, the writer, the conversation, the seq of the
    last message before the outage and the last seq sent during it, and when Redis returned."""
    h = History()
    token = c.a.token(_user("redis"))
    writer = await Pipe.open(c.a.ws_url, token, h, "writer@A")
    cid, base = await writer.quiet_conversation()
    sub = Member(h, "device@B", c.b.ws_url, token, {cid: base}, contiguous=True)
    await sub.connect()
    h.expect_complete("device@B", cid, base)

    await _send_all(writer, cid, 20, "before")
    await sub.wait(lambda: sub.cursors[cid] >= base + 20, 10)  # across nodes, through Redis

    c.proxy.down()
    try:
        durations = await _send_all(writer, cid, 10, "during")
        # Publishing fails, sending does not: every message acked, none waits long.
        assert max(durations) < 5.0, durations
        ready = httpx.get(c.a.url + "/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["checks"]["bus"] is False, ready.text
    finally:
        c.proxy.up()
    return h, sub, writer, cid, base + 20, base + 30, time.monotonic()


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_two_nodes_redis_outage_loses_no_acknowledged_message(cluster: Cluster) -> None:
    h, sub, writer, cid, _before, during, back = await _redis_outage_scenario(cluster)
    # Live delivery across nodes comes back once Redis does (a probe every 0.25 s).
    probe = 0
    while sub.cursors[cid] < during and not [s for _t, _c, s in sub.live if s > during]:
        assert time.monotonic() - back < 10, "no live delivery across nodes 10 s after Redis returned"
        await _send_all(writer, cid, 1, "probe")
        probe += 1
        await asyncio.sleep(0.25)
    # The subscriber sees a gap in seq (what it missed while Redis was down) and resumes from
    # the last seq it has without a gap: the database fills it.
    last = during + probe
    assert sub.connects == 1
    await sub.disconnect()
    await sub.catch_up({cid: last})
    assert sub.connects == 2
    await asyncio.sleep(0.2)
    await sub.disconnect()
    await writer.close()
    result = h.check(await db_messages(cluster.database_url, [cid]), require_all_acked=True)
    result.assert_ok()
    assert result.acked == 30 + probe


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_messages_acked_during_a_redis_outage_reach_live_subscribers_after_its_return(
        cluster: Cluster) -> None:
    """QUALITY.md: Redis killed and restarted empty -> everything delivered within 5 s of its
    return, without the client having to notice a gap and reconnect. Regression (fixed in
    ad8ac59 for the Python fan-out): nothing caught the node's sockets up."""
    _h, sub, writer, cid, _before, during, back = await _redis_outage_scenario(cluster)
    try:
        await sub.wait(lambda: sub.cursors[cid] >= during, max(0.5, 5 - (time.monotonic() - back)))
    finally:
        await sub.disconnect()
        await writer.close()
    assert sub.connects == 1


@pytest.fixture(scope="module")
def socketify_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The same on socketify (the default server), whose fan-out is uWS's native topics."""
    proxy = _redis_proxy()
    url = asyncio.run(create_pg_database())
    env = {**FAST_ENV, "PARLEY_DATABASE_URL": url, "PARLEY_REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0"}
    dir_a: Path = tmp_path_factory.mktemp("sock-a")
    dir_b: Path = tmp_path_factory.mktemp("sock-b")
    a = LiveServer("socketify", free_port(), dir_a, env)
    b = LiveServer("socketify", free_port(), dir_b, env)
    try:
        a.start(timeout=60)
        shutil.copy(dir_a / "demo-admin-key.txt", dir_b / "demo-admin-key.txt")
        shutil.copy(dir_a / "secret.key", dir_b / "secret.key")
        b.start(timeout=60)
        yield Cluster(a, b, proxy, url)
    finally:
        b.kill()
        a.kill()
        proxy.close()
        asyncio.run(drop_pg_database(url))


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_socketify_messages_acked_during_a_redis_outage_reach_live_subscribers(
        socketify_cluster: Cluster) -> None:
    _h, sub, writer, cid, _before, during, back = await _redis_outage_scenario(socketify_cluster)
    try:
        await sub.wait(lambda: sub.cursors[cid] >= during, max(0.5, 5 - (time.monotonic() - back)))
    finally:
        await sub.disconnect()
        await writer.close()
    assert sub.connects == 1


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_socketify_two_nodes_redis_outage_loses_no_acknowledged_message(socketify_cluster: Cluster) -> None:
    """Publishing fails without failing the send, across-node delivery comes back with Redis,
    and a subscriber that resumes from its last gap-free seq gets everything."""
    h, sub, writer, cid, _before, during, back = await _redis_outage_scenario(socketify_cluster)
    probe = 0
    while not [s for _t, _c, s in sub.live if s > during]:
        assert time.monotonic() - back < 10, "no live delivery across nodes 10 s after Redis returned"
        await _send_all(writer, cid, 1, "probe")
        probe += 1
        await asyncio.sleep(0.25)
    await sub.disconnect()
    await sub.catch_up({cid: during + probe})
    await asyncio.sleep(0.2)
    await sub.disconnect()
    await writer.close()
    result = h.check(await db_messages(socketify_cluster.database_url, [cid]), require_all_acked=True)
    result.assert_ok()


async def _socketify_slow_scenario(node: LiveServer) -> dict[str, Any]:
    """A writer, a fast reader and a stalled reader on one socketify node (native fan-out with
    uWS's backpressure limit, serving.py); 200 messages of ~48 KiB on the wire."""
    h = History()
    token = node.token(_user("sock-slow"))
    writer = await Pipe.open(node.ws_url, token, h, "writer")
    cid, base = await writer.quiet_conversation()
    fast = Member(h, "fast", node.ws_url, token, {cid: base})
    await fast.connect()
    h.expect_complete("fast", cid, base)
    h.expect_complete("slow", cid, base)
    slow_ws = await _stalled_socket(node.ws_url, node.port)
    await slow_ws.send(json.dumps({"type": "hello", "token": token, "resume": {cid: base}}))
    assert json.loads(await slow_ws.recv())["type"] == "welcome"
    # Its resume is over before the traffic starts (a resume racing live traffic is another test).
    assert json.loads(await slow_ws.recv())["type"] == "subscribed"
    slow_session = h.open("slow", {cid: base})
    await _send_all(writer, cid, 200, "😀" * 3990)
    last = base + 200
    await fast.wait(lambda: fast.cursors[cid] >= last, 20)
    told: list[dict[str, Any]] = []
    ended = "silence"
    try:
        while True:
            frame = json.loads(await asyncio.wait_for(slow_ws.recv(), 5))
            h.receive(slow_session, frame)
            if frame["type"] in ("error", "bye"):
                told.append(frame)
    except websockets.ConnectionClosed as exc:
        ended = repr(exc)
    except TimeoutError:
        pass
    h.close(slow_session)
    return {"h": h, "token": token, "writer": writer, "fast": fast, "cid": cid, "base": base, "last": last,
            "told": told, "ended": ended}


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_socketify_slow_consumer_is_cut_off_others_flow_and_it_catches_up(socketify_cluster: Cluster) -> None:
    node = socketify_cluster.a
    sc = await _socketify_slow_scenario(node)
    h, cid = sc["h"], sc["cid"]
    assert sc["fast"].connects == 1  # others unaffected: everything live, in its first session
    assert "ConnectionClosed" in sc["ended"], sc["ended"]  # bounded: uWS cut the stalled reader off
    got = h.last_seq("slow", cid)
    assert got < sc["last"]
    slow = Member(h, "slow", node.ws_url, sc["token"], {cid: got or sc["base"]})
    await slow.catch_up({cid: sc["last"]})
    await asyncio.sleep(0.2)
    for m in (slow, sc["fast"]):
        await m.disconnect()
    await sc["writer"].close()
    h.check(await db_messages(socketify_cluster.database_url, [cid]), require_all_acked=True).assert_ok()


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_socketify_slow_consumer_is_told_why(socketify_cluster: Cluster) -> None:
    """QUALITY.md: the slow consumer is told slow_consumer; PROTOCOL.md: an error (fatal) or a
    bye frame comes before every close the server starts."""
    sc = await _socketify_slow_scenario(socketify_cluster.a)
    await sc["fast"].disconnect()
    await sc["writer"].close()
    assert any(f["type"] == "error" and f["code"] == "slow_consumer" for f in sc["told"]), (sc["told"], sc["ended"])
    assert any(f["type"] == "bye" and f["reconnect"] is True for f in sc["told"]), (sc["told"], sc["ended"])


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_socketify_resume_during_live_traffic_neither_reorders_nor_duplicates(
        socketify_cluster: Cluster) -> None:
    """Three devices resume a 300-message backlog eight times each while two writers keep
    sending: every session must see seq strictly increasing, each message once."""
    node = socketify_cluster.a
    h = History()
    token = node.token(_user("sock-resume"))
    writers = [await Pipe.open(node.ws_url, token, h, f"writer{i}") for i in range(2)]
    cid, base = await writers[0].quiet_conversation()
    await _send_all(writers[0], cid, 300, "backlog")
    stop = asyncio.Event()

    async def write(w: Pipe) -> None:
        while not stop.is_set():
            await _send_all(w, cid, 1, "live")

    tasks = [asyncio.create_task(write(w)) for w in writers]
    members = [Member(h, f"device{i}", node.ws_url, token, {cid: base}) for i in range(3)]

    async def rounds(m: Member) -> None:
        for _ in range(8):
            m.cursors[cid] = base  # the whole backlog again: a long replay window
            await m.connect()
            await asyncio.sleep(0.05)
            await m.disconnect()

    try:
        await asyncio.gather(*(rounds(m) for m in members))
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for w in writers:
            await w.close()
    h.check(await db_messages(socketify_cluster.database_url, [cid])).assert_ok()
