"""The two-node chaos test (QUALITY.md, "Delivery"): two ``parley serve`` processes sharing
PostgreSQL and a Redis of the test's own, users writing and their devices reading on both
nodes, and

* one node ``SIGKILL``ed every few seconds and restarted, alternately, the clients of the dead
  node resuming on the live one (writers re-sending what was not acknowledged, with the same
  ``client_msg_id``; devices resuming from their last gap-free seq);
* the test's Redis ``SIGKILL``ed and restarted empty while the traffic goes on.

Every send, ack, receive, open and close is logged to a :class:`History` and checked against
the database: 0 lost (acknowledged but never received by a member), 0 duplicated, 0 reordered;
and at least 95% of the resumes served within 5 s of the device losing its socket (a count of
the clients' own measurements, not a timing of the test).

Bounded by default (three kills per server, ``CHAOS_KILLS``); the long form of QUALITY.md
is ``CHAOS_SECONDS=300 CHAOS_KILL_EVERY_S=20 pytest -m chaos`` (kills go on until
both bounds are reached)."""

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import websockets

from tests.conftest import create_pg_database, drop_pg_database, need
from tests.support.history import History, Member, Pipe, db_messages
from tests.support.inproc import FAST_ENV
from tests.support.live import LiveServer, free_port

pytestmark = [pytest.mark.chaos, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::DeprecationWarning:server")]

# Kills go on until both bounds are reached (a restart takes 10-40 s on a loaded machine).
CHAOS_KILLS = int(os.environ.get("CHAOS_KILLS", "3"))
CHAOS_S = float(os.environ.get("CHAOS_SECONDS", "0"))
# A node is killed this long after the previous victim is serving again.
KILL_EVERY_S = float(os.environ.get("CHAOS_KILL_EVERY_S", "3"))
REDIS_DOWN_S = float(os.environ.get("CHAOS_REDIS_DOWN_S", "3"))
USERS = int(os.environ.get("CHAOS_USERS", "6"))
SEND_PERIOD_S = 0.03
RESUME_BOUND_S = 5.0
_GONE = (OSError, TimeoutError, ConnectionError, websockets.ConnectionClosed, websockets.InvalidHandshake)


class OwnRedis:
    """A ``redis-server`` of the test's own on a free port: killing it touches nobody else."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with (self.dir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.dir)], stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            deadline = time.monotonic() + 10
            while True:
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError("the test's redis-server did not start")
                time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@dataclass
class Cluster:
    kind: str
    nodes: list[LiveServer]
    redis: OwnRedis
    database_url: str


@pytest.fixture(scope="module", params=["socketify", "uvicorn"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    kind = str(request.param)
    need("redis-server", shutil.which("redis-server") is not None, "not installed")
    own = OwnRedis(tmp_path_factory.mktemp(f"chaos-redis-{kind}"))
    own.start()
    url = asyncio.run(create_pg_database())
    env = {**FAST_ENV, "PARLEY_DATABASE_URL": url, "PARLEY_REDIS_URL": own.url, "PARLEY_REDIS_RETRY_S": "0.25"}
    dirs: list[Path] = [tmp_path_factory.mktemp(f"chaos-{kind}-a"), tmp_path_factory.mktemp(f"chaos-{kind}-b")]
    nodes = [LiveServer(kind, free_port(), d, env) for d in dirs]
    try:
        nodes[0].start(timeout=180)
        for name in ("demo-admin-key.txt", "secret.key"):  # one tenant and one secrets key, two nodes
            shutil.copy(dirs[0] / name, dirs[1] / name)
        nodes[1].start(timeout=180)
        yield Cluster(kind, nodes, own, url)
    finally:
        for n in nodes:
            n.kill()
        own.kill()
        asyncio.run(drop_pg_database(url))


class Writer:
    """One user sending to its conversation one message at a time, like a correct client: a
    send without an ack (socket lost, ``unavailable``) is sent again with the same
    ``client_msg_id`` until it is acknowledged, on whichever node answers."""

    def __init__(self, h: History, name: str, token: str, cid: str, urls: list[str], home: int) -> None:
        self.h, self.name, self.token, self.cid, self.urls = h, name, token, cid, urls
        self.at = home
        self.pipe: Pipe | None = None
        self.sent = 0

    async def _open(self) -> Pipe:
        while True:
            try:
                return await Pipe.open(self.urls[self.at], self.token, self.h, self.name)
            except (*_GONE, AssertionError):  # refused, or answered with an error instead of welcome
                self.at = 1 - self.at
                await asyncio.sleep(0.05)

    async def _lost(self) -> None:
        if self.pipe is not None:
            await self.pipe.close()
        self.pipe = None
        self.at = 1 - self.at

    async def deliver(self, text: str) -> None:
        cmid = str(uuid.uuid4())
        while True:
            if self.pipe is None:
                self.pipe = await self._open()
            try:
                reply = await self.pipe.send(self.cid, cmid, text, timeout=10)
            except _GONE:
                await self._lost()
                continue
            if reply["type"] == "ack":
                self.sent += 1
                return
            await asyncio.sleep(0.2)  # unavailable or rate limited: the same send again later

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.deliver(f"{self.name} {self.sent}")
            await asyncio.sleep(SEND_PERIOD_S)

    async def close(self) -> None:
        if self.pipe is not None:
            await self.pipe.close()


@dataclass
class Device:
    """One device of a user that follows its conversation and, after losing its socket, resumes
    (from its last gap-free seq) on whichever node answers; ``resumes`` holds how long each
    resume took, from the loss of the socket to every resumed conversation ``subscribed``."""

    member: Member
    urls: list[str]
    at: int
    resumes: list[float] = field(default_factory=list)
    attempts: list[tuple[int, float, str]] = field(default_factory=list)  # (node, seconds, outcome)

    async def connect(self) -> None:
        while True:
            self.member.ws_url = self.urls[self.at]
            t0 = time.monotonic()
            try:
                first = await self.member.connect(timeout=RESUME_BOUND_S)
                self.attempts.append((self.at, round(time.monotonic() - t0, 2), str(first.get("type"))))
                if first.get("type") == "welcome":
                    return
            except _GONE as exc:
                self.attempts.append((self.at, round(time.monotonic() - t0, 2), type(exc).__name__))
                await self.member.disconnect()
            self.at = 1 - self.at
            await asyncio.sleep(0.05)

    async def run(self, stop: asyncio.Event) -> None:
        await self.connect()
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                reader = self.member.reader
                assert reader is not None
                await asyncio.wait([reader, stopping], return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():
                    return
                lost = time.monotonic()
                await self.member.disconnect()
                self.at = 1 - self.at  # the node that dropped it is likely dead: the other first
                await self.connect()
                self.resumes.append(time.monotonic() - lost)
        finally:
            stopping.cancel()


@dataclass
class Traffic:
    h: History
    writers: list[Writer]
    devices: list[Device]
    conversations: list[str]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self.tasks = [asyncio.create_task(w.run(self.stop)) for w in self.writers]
        self.tasks += [asyncio.create_task(d.run(self.stop)) for d in self.devices]

    async def finish(self, c: Cluster) -> None:
        """Stop the traffic, let every device catch up to the database (as a client does that
        resumes from its last gap-free seq), close everything and check the history."""
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 60)
        last = {cid: max((m.seq for m in ms), default=0)
                for cid, ms in (await db_messages(c.database_url, self.conversations)).items()}
        try:
            for d in self.devices:
                want = {cid: last[cid] for cid in d.member.cursors}
                if not all(d.member.cursors[cid] >= s for cid, s in want.items()):
                    await d.member.disconnect()
                    await d.connect()
                    await d.member.wait(lambda d=d, want=want: all(d.member.cursors[c] >= s  # type: ignore[misc]
                                                                   for c, s in want.items()), 30)
            await asyncio.sleep(0.3)  # anything late (a duplicate) still reaches the history
        finally:
            for d in self.devices:
                await d.member.disconnect()
            for w in self.writers:
                await w.close()
        result = self.h.check(await db_messages(c.database_url, self.conversations), require_all_acked=True)
        print(f"\n{c.kind}: {result.summary()}; resumes {len(self.resumes())}, "
              f"slowest {max(self.resumes(), default=0):.2f} s")
        result.assert_ok()
        assert result.acked == sum(w.sent for w in self.writers) > 0

    def resumes(self) -> list[float]:
        return [t for d in self.devices for t in d.resumes]


async def _traffic(c: Cluster) -> Traffic:
    """USERS users, each writing to its own conversation from one node while two devices of it
    follow the conversation, one on each node."""
    h = History()
    urls = [n.ws_url for n in c.nodes]
    writers: list[Writer] = []
    devices: list[Device] = []
    cids: list[str] = []
    for i in range(USERS):
        token = c.nodes[0].token(f"chaos-{uuid.uuid4().hex[:8]}")
        home = i % 2
        setup = await Pipe.open(urls[home], token, None, "setup")
        try:
            cid, base = await setup.quiet_conversation()
        finally:
            await setup.close()
        cids.append(cid)
        writers.append(Writer(h, f"writer{i}", token, cid, urls, home))
        for j in range(2):
            name = f"user{i}-device{j}"
            h.expect_complete(name, cid, base)
            devices.append(Device(Member(h, name, urls[j], token, {cid: base}, contiguous=True), urls, j))
    return Traffic(h, writers, devices, cids)


def _within_bound(resumes: list[float]) -> float:
    return sum(t <= RESUME_BOUND_S for t in resumes) / len(resumes)


@pytest.mark.timeout(int(CHAOS_S) + 300 * CHAOS_KILLS + 300)  # a bound for a hang, on a loaded machine
async def test_a_node_killed_again_and_again_loses_duplicates_and_reorders_nothing(cluster: Cluster) -> None:
    t = await _traffic(cluster)
    t.start()
    kills = 0
    try:
        end = time.monotonic() + CHAOS_S
        victim = 0
        while kills < CHAOS_KILLS or time.monotonic() < end:
            await asyncio.sleep(KILL_EVERY_S)
            cluster.nodes[victim].kill()
            kills += 1
            await asyncio.to_thread(cluster.nodes[victim].start, 180)
            victim = 1 - victim
    finally:
        await t.finish(cluster)
    resumes = t.resumes()
    print(f"{cluster.kind}: {kills} kills")
    assert len(resumes) >= USERS, (kills, resumes)
    assert _within_bound(resumes) >= 0.95, (sorted(resumes), [d.attempts for d in t.devices])


@pytest.mark.timeout(600)
async def test_redis_killed_and_restarted_empty_loses_duplicates_and_reorders_nothing(cluster: Cluster) -> None:
    """Both nodes lose the bus; sends are still acknowledged; after Redis returns (empty: no
    subscription survives) each node resubscribes and catches its sockets up, unasked: at least
    95% of the devices have everything acknowledged during the outage within 5 s of the return."""
    t = await _traffic(cluster)
    t.start()
    await asyncio.sleep(1.0)
    cluster.redis.kill()
    await asyncio.sleep(REDIS_DOWN_S)
    during = {w.cid: 0 for w in t.writers}
    try:
        for a in t.h.acked():
            during[a[0]] = max(during[a[0]], a[3])
        cluster.redis.start()
        back = time.monotonic()
        caught_up: dict[str, float] = {}

        def check() -> bool:
            now = time.monotonic()
            for d in t.devices:
                if d.member.name not in caught_up and all(d.member.cursors[c] >= during[c] for c in d.member.cursors):
                    caught_up[d.member.name] = now - back
            return len(caught_up) == len(t.devices)

        deadline = back + 20
        while not check() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        snapshot = {d.member.name: dict(d.member.cursors) for d in t.devices}
    finally:
        await t.finish(cluster)
    # The devices stayed on their nodes: caught up by the server, not by resuming.
    assert all(d.member.connects >= 1 and not d.resumes for d in t.devices), [d.resumes for d in t.devices]
    late = [(d.member.name, d.urls[d.at][-12:], dict(d.member.cursors), snapshot.get(d.member.name)) for d in t.devices
            if d.member.name not in caught_up]
    assert _within_bound(list(caught_up.values()) + [RESUME_BOUND_S + 1] * len(late)) >= 0.95, (during, late)
