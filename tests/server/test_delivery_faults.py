"""Delivery through faults: the server process killed (``os._exit``) at each point of the send
path and restarted, SIGTERM under load on socketify and uvicorn, and the database going away
and coming back. Judged by the history checker against the database rows.

Each ``parley serve`` start costs seconds (imports), so the crash test chains the four fault
points through one data dir and database per backend (the retry of one point's message is
the first send to the next server) and each backend/server pair runs once: uvicorn on SQLite,
socketify on PostgreSQL."""

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import websockets

from server.accounts.auth import Principal, issue_token
from server.accounts.tenants import ensure_demo_tenant
from server.chat.service import ChatService, Sender, iso
from server.core.db import Database
from server.fanout import MemoryBus, PythonFanout
from server.migrations import upgrade
from tests.conftest import PG_ADMIN_DSN, create_pg_database, drop_pg_database
from tests.support.history import History, Member, Pipe, db_messages
from tests.support.inproc import FAST, FAST_ENV, InProcServer, make_settings
from tests.support.live import LiveServer, free_port

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:server")


@dataclass
class Seeded:
    """A database prepared by the test itself (no server start needed): the demo tenant, users
    with a quiet conversation each (already handed to the empty human queue, so the AI agent
    posts nothing) and a few acknowledged messages in each."""

    url: str
    data_dir: Path
    tokens: dict[str, str]
    conversations: dict[str, str]  # user -> conversation
    history: History


@contextlib.asynccontextmanager
async def seeded(tmp_path: Path, backend: str, users: int, messages: int = 3) -> AsyncIterator[Seeded]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    url = await create_pg_database() if backend == "postgres" else f"sqlite+aiosqlite:///{data_dir / 'parley.db'}"
    h = History()
    try:
        db = Database(url, pool_size=2)
        try:
            await upgrade(db)
            created = await ensure_demo_tenant(db, data_dir)
            assert created is not None
            tenant = created.tenant
            chat = ChatService(db, MemoryBus(PythonFanout()))
            tokens, convs = {}, {}
            for i in range(users):
                sub = f"u{i}-{uuid.uuid4().hex[:6]}"
                p = Principal(tenant_id=tenant.id, role="user", id=sub)
                conv = await chat.start_conversation(p)
                await chat.set_status(None, tenant.id, conv.id, "handoff", reason="test")
                for j in range(messages):
                    cmid = str(uuid.uuid4())
                    h.send(sub, conv.id, cmid, f"seed {j}")
                    m = (await chat.post_message(tenant.id, conv.id, Sender.of(p), f"seed {j}",
                                                 client_msg_id=cmid, principal=p)).message
                    h.ack({"conversation_id": conv.id, "client_msg_id": cmid, "message_id": m.id, "seq": m.seq,
                           "created_at": iso(m.created_at)})
                tokens[sub] = issue_token(tenant, sub=sub, role="user", ttl_s=3600)
                convs[sub] = conv.id
        finally:
            await db.dispose()
        yield Seeded(url, data_dir, tokens, convs, h)
    finally:
        if backend == "postgres":
            await drop_pg_database(url)


def _start(kind: str, s: Seeded, fault: str | None = None, **env: str) -> LiveServer:
    extra = {**FAST_ENV, "PARLEY_DATABASE_URL": s.url, **env}
    if fault:
        extra["PARLEY_FAULT_POINT"] = fault
    return LiveServer(kind, free_port(), s.data_dir, extra).start(timeout=60)


async def _try_send(pipe: Pipe, cid: str, cmid: str, text: str) -> dict[str, Any] | None:
    """A send that may die with the server: the ack, an error frame, or None."""
    try:
        return await pipe.send(cid, cmid, text, timeout=15)
    except (ConnectionError, websockets.ConnectionClosed, TimeoutError):
        return None


# ---------------------------------------------------------------------------------------------
# Crash at each point of the send path, then SIGTERM under load
# ---------------------------------------------------------------------------------------------


async def _crash_chain(kind: str, s: Seeded, user: str) -> LiveServer:
    """before_commit -> after_commit -> before_publish -> during_fanout, then a clean server
    (returned running). Whatever was acknowledged survives; whatever was not is stored exactly
    once after the client retries the same client_msg_id; seq stays gap-free. A second device
    resumes after every crash and ends up with every message exactly once."""
    h, token, cid = s.history, s.tokens[user], s.conversations[user]
    device = Member(h, "device", "", token, {cid: 0})
    h.expect_complete("device", cid, 0)
    pending: list[tuple[str, str]] = []  # (client_msg_id, text) not acknowledged yet
    outcomes: dict[str, str] = {}
    for n, point in enumerate(["before_commit", "after_commit", "before_publish", "during_fanout", None]):
        srv = _start(kind, s, point)
        try:
            device.ws_url = srv.ws_url
            await device.connect()
            pipe = await Pipe.open(srv.ws_url, token, h, user)
            # First the retries (the previous crash's message), then one new message.
            for cmid, text in list(pending):
                reply = await _try_send(pipe, cid, cmid, text)
                if reply is not None and reply["type"] == "ack":
                    pending.remove((cmid, text))
            if point != "after_commit":  # there, the retry itself is what crashes
                cmid, text = str(uuid.uuid4()), f"new at {point or 'clean'}"
                reply = await _try_send(pipe, cid, cmid, text)
                if reply is None or reply["type"] != "ack":
                    pending.append((cmid, text))
                outcomes[f"{n}:{point}"] = "acked" if reply is not None and reply["type"] == "ack" else "lost ack"
            if point is not None:
                # The server must be dead now, by os._exit(17) at the fault point.
                code = srv.wait(15)
                assert code == 17, f"{point}: exit code {code}\n{srv.log()}"
            else:
                assert pending == [], pending
                rows = await db_messages(s.url, [cid])
                await device.catch_up({cid: max(m.seq for m in rows[cid])})
                await asyncio.sleep(0.2)
            await device.disconnect()
            await pipe.close()
        except BaseException:  # broad: cleanup, then re-raised
            srv.kill()
            raise
        if point is not None:
            srv.kill()
    result = h.check(await db_messages(s.url, s.conversations.values()), require_all_acked=True)
    result.assert_ok()
    # 3 seeded per user + in this conversation one message per crash point (before_commit's was
    # retried into after_commit's crash) + the clean server's.
    assert result.acked == 3 * len(s.conversations) + 4, (result.summary(), outcomes)
    if kind == "socketify":
        # Native fan-out lets the ack leave before the publish: the before_publish and
        # during_fanout messages were acknowledged before the crash, and survived it.
        assert outcomes["2:before_publish"] == "acked" and outcomes["3:during_fanout"] == "acked", outcomes
    return srv


async def _sigterm_under_load(kind: str, s: Seeded, srv: LiveServer, users: list[str]) -> None:
    """Clients sending as fast as they can; SIGTERM: each gets ``bye`` with reconnect: true,
    and every acknowledged message is in the database (read after the process is gone)."""
    h = s.history
    pipes = {u: await Pipe.open(srv.ws_url, s.tokens[u], h, u) for u in users}
    sent = dict.fromkeys(pipes, 0)

    async def load(user: str, pipe: Pipe) -> None:
        cid = s.conversations[user]
        while True:
            reply = await _try_send(pipe, cid, str(uuid.uuid4()), f"load {sent[user]}")
            if reply is None:
                return
            assert reply["type"] == "ack" or reply.get("code") == "unavailable", reply
            sent[user] += 1

    tasks = [asyncio.create_task(load(u, p)) for u, p in pipes.items()]
    t0 = time.monotonic()
    while sum(sent.values()) < 100 and time.monotonic() - t0 < 15:
        await asyncio.sleep(0.05)
    t_term = time.monotonic()
    srv.signal(signal.SIGTERM)
    await asyncio.wait_for(asyncio.gather(*tasks), 20)
    exit_code = srv.wait(20)
    elapsed = time.monotonic() - t_term
    byes = {u: [f for f in p.frames if f.get("type") == "bye"] for u, p in pipes.items()}
    assert all(len(b) == 1 and b[0]["reconnect"] is True for b in byes.values()), byes
    assert sum(sent.values()) >= 100, sent
    result = h.check(await db_messages(s.url, s.conversations.values()))
    result.assert_ok()
    assert elapsed < 15
    # (Before 45581c6 socketify crashed here about one run in three, exit -11: the lifespan
    # shutdown drained a second time and touched sockets uWS had already closed.)
    # uvicorn re-raises the signal after its graceful shutdown (exit -15); socketify exits 0.
    assert exit_code in (0, -signal.SIGTERM), srv.log()
    assert "Traceback" not in srv.log(), srv.log()


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("kind", "backend"), [("socketify", "sqlite"), ("uvicorn", "postgres")])
async def test_crash_at_every_point_of_the_send_path_then_sigterm_under_load(kind: str, backend: str,
                                                                            tmp_path: Path) -> None:
    """One data dir and database through five server processes: four killed by os._exit(17)
    at the fault points of the send path, the fifth (clean) stopped by SIGTERM under load.
    (Chained because each process start costs seconds of imports.)"""
    async with seeded(tmp_path, backend, users=11) as s:
        users = sorted(s.tokens)
        srv = await _crash_chain(kind, s, users[0])
        try:
            # The nine others (the first one's device has left and expects nothing more).
            await _sigterm_under_load(kind, s, srv, users[1:])
        finally:
            srv.kill()


# ---------------------------------------------------------------------------------------------
# The database goes away and comes back (PostgreSQL)
# ---------------------------------------------------------------------------------------------


async def _set_connections(name: str, allowed: bool) -> None:
    admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if allowed else "false"}')
        if not allowed:
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = $1 AND pid <> pg_backend_pid()", name)
    finally:
        await admin.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_database_outage_answers_unavailable_and_acks_nothing_uncommitted(tmp_path: Path) -> None:
    """QUALITY.md asks for 30 s; scaled down to ~4 s here (the server holds no timer longer than
    its 5 s pool/connect timeouts, so a longer outage exercises nothing more). PostgreSQL only:
    a SQLite file cannot go away while the process holds it open."""
    url = await create_pg_database()
    name = url.rsplit("/", 1)[1]
    srv = InProcServer(make_settings(tmp_path, url, **FAST))
    h = History()
    try:
        srv.start()
        token = srv.token(f"outage-{uuid.uuid4().hex[:6]}")
        pipe = await Pipe.open(srv.ws_url, token, h, "user")
        cid, _base = await pipe.quiet_conversation()
        for i in range(3):
            assert (await pipe.send(cid, str(uuid.uuid4()), f"before {i}"))["type"] == "ack"

        await _set_connections(name, allowed=False)
        during: list[dict[str, Any]] = []
        try:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 4:
                reply = await pipe.send(cid, str(uuid.uuid4()), f"during {len(during)}", timeout=20)
                during.append(reply)
                await asyncio.sleep(0.1)
            async with httpx.AsyncClient(base_url=srv.url, headers={"Authorization": f"Bearer {token}"},
                                         timeout=20) as http:
                rest = await http.post(f"/v1/conversations/{cid}/messages",
                                       json={"client_msg_id": str(uuid.uuid4()), "text": "rest during"})
                ready = await http.get("/readyz")
            late = Member(h, "late", srv.ws_url, token, {})
            refused = await late.connect()
        finally:
            await _set_connections(name, allowed=True)

        codes = [r.get("code") for r in during if r["type"] == "error"]
        assert during and len(codes) == len(during), f"acks while the database was down: {during}"
        assert set(codes) == {"unavailable"}, codes
        assert all(r.get("retry_after_ms", 0) > 0 for r in during), during
        assert rest.status_code == 503 and rest.json()["error"]["code"] == "unavailable", rest.text
        assert "Retry-After" in rest.headers
        assert ready.status_code == 503 and ready.json()["checks"]["database"] is False, ready.text
        assert (refused.get("type"), refused.get("code")) == ("error", "unavailable"), refused
        assert refused.get("fatal") is True

        # After recovery: the refused sends, retried with their keys, are stored once; new ones work.
        deadline = time.monotonic() + 30
        for cmid_text in h.unacked():
            _c, cmid, text = cmid_text
            while True:
                reply = await pipe.send(cid, cmid, text, timeout=20)
                if reply["type"] == "ack":
                    break
                assert reply["code"] == "unavailable" and time.monotonic() < deadline, reply
                await asyncio.sleep(reply.get("retry_after_ms", 500) / 1000)
        assert (await pipe.send(cid, str(uuid.uuid4()), "after"))["type"] == "ack"
        ready_after = httpx.get(srv.url + "/readyz", timeout=20)
        assert ready_after.json()["checks"]["database"] is True, ready_after.text
        await pipe.close()
        result = h.check(await db_messages(url, [cid]), require_all_acked=True)
        result.assert_ok()
        assert result.acked == 3 + len(during) + 1
    finally:
        srv.stop()
        await drop_pg_database(url)
