"""A visitor who hangs up while the server is still working on its socket must not take the
server down. On socketify each of these killed the process, anonymously: native subscribe/close
on a socket already gone (a few dozen connect -> hello -> close cycles), an upgrade request
reset before its 101 (a few hundred), and a request body still arriving after the answer (about
a hundred)."""

import asyncio
import contextlib
import json
import os
import random
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.support.live import LiveServer, free_port
from tests.support.ws import WsClient

pytestmark = pytest.mark.slow

# uvicorn never had the native bug; a shorter run there keeps the gateway's paths covered cheaply.
CYCLES = {"socketify": 2000, "uvicorn": 400}
WORKERS = 10
# Bounds the loop on a slow or shared machine; the assertions never depend on it.
BUDGET_S = 40.0


@pytest.fixture(scope="module", params=["socketify", "uvicorn"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data: Path = tmp_path_factory.mktemp(f"gone-{request.param}")
    srv = LiveServer(request.param, free_port(), data, {}).start(timeout=120)
    yield srv
    srv.kill()


def widget_token(srv: LiveServer) -> str:
    key = (srv.data_dir / "demo-widget-key.txt").read_text().strip()
    r = httpx.post(srv.url + "/v1/widget/session", json={"widget_key": key}, timeout=10)
    r.raise_for_status()
    return str(r.json()["token"])


async def _cycle(url: str, token: str, rng: random.Random | None) -> None:
    async def pause() -> None:
        if rng is not None:
            await asyncio.sleep(rng.choice((0.0, 0.0, rng.random() * 0.004, rng.random() * 0.02)))

    ws = await websockets.connect(url, open_timeout=10, ping_interval=None)
    try:
        await pause()
        await ws.send(json.dumps({"type": "hello", "token": token}))
        await pause()
    finally:
        if rng is not None and rng.random() < 0.5:
            ws.transport.abort()  # no close handshake: the peer simply vanishes
        else:
            await ws.close()


def _masked_text(text: str) -> bytes:
    data = text.encode()
    mask = os.urandom(4)
    size = bytes([0x80 | len(data)]) if len(data) < 126 else bytes([0x80 | 126]) + struct.pack(">H", len(data))
    return b"\x81" + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


async def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _upgrade_then_reset(port: int, token: str, rng: random.Random) -> None:
    """Raw TCP: the upgrade request, maybe a hello right behind it, then a reset before or just
    after the server's 101."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    mode = rng.randrange(4)
    request = (f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    writer.write(request + (_masked_text(json.dumps({"type": "hello", "token": token})) if mode else b""))
    if mode == 2:
        await asyncio.sleep(rng.random() * 0.003)
    elif mode == 3:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.5)
    await _reset(writer)


async def _body_after_answer(port: int, rng: random.Random) -> None:
    """A POST whose body is still coming when the server has already answered (no route, no
    token), then a reset or a plain close half-way through."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    path = rng.choice(["/nope", "/v1/tokens", "/v1/widget/session"])
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 "Content-Length: 2000000\r\n\r\n".encode())
    for _ in range(rng.randrange(1, 12)):
        writer.write(b"x" * 65536)
        await writer.drain()
        await asyncio.sleep(rng.random() * 0.01)
    if rng.random() < 0.5:
        await _reset(writer)
    else:
        writer.transport.abort()


async def _hammer(srv: LiveServer, cycles: int, one: Callable[[], Awaitable[None]]) -> int:
    deadline = time.monotonic() + BUDGET_S
    done = 0

    async def worker(n: int) -> None:
        nonlocal done
        for _ in range(n):
            if time.monotonic() > deadline or (srv.proc is not None and srv.proc.poll() is not None):
                return
            try:
                await one()
            except (OSError, websockets.WebSocketException, TimeoutError):
                await asyncio.sleep(0.05)  # the server is gone or refusing: the checks below say which
            done += 1

    await asyncio.gather(*(worker(cycles // WORKERS) for _ in range(WORKERS)))
    return done


async def _still_serves(srv: LiveServer) -> None:
    assert srv.proc is not None and srv.proc.poll() is None, f"server died:\n{srv.log()}"
    token = widget_token(srv)
    a = await WsClient.connect(srv.ws_url, token)
    b = await WsClient.connect(srv.ws_url, token)
    cid = await a.start()
    await b.send({"type": "subscribe", "conversation_id": cid, "ref": "s"})
    await b.expect("subscribed", conversation_id=cid)
    ack = await a.say(cid, "still here?")
    got = await b.expect("message", conversation_id=cid, timeout=10)
    assert got["message"]["seq"] == ack["seq"]
    await a.close()
    await b.close()


async def test_hello_then_immediate_close_never_crashes_the_server(server: LiveServer) -> None:
    token = widget_token(server)
    done = await _hammer(server, CYCLES[server.kind], lambda: _cycle(server.ws_url, token, None))
    assert done > 0
    await _still_serves(server)


async def test_random_delays_between_connect_hello_and_close(server: LiveServer) -> None:
    token, rng = widget_token(server), random.Random(16)
    done = await _hammer(server, CYCLES[server.kind], lambda: _cycle(server.ws_url, token, rng))
    assert done > 0
    await _still_serves(server)


async def test_reset_during_the_upgrade_never_crashes_the_server(server: LiveServer) -> None:
    token, rng = widget_token(server), random.Random(17)
    done = await _hammer(server, CYCLES[server.kind], lambda: _upgrade_then_reset(server.port, token, rng))
    assert done > 0
    await _still_serves(server)


async def test_body_still_arriving_after_the_answer_never_crashes_the_server(server: LiveServer) -> None:
    rng = random.Random(18)
    done = await _hammer(server, CYCLES[server.kind] // 5, lambda: _body_after_answer(server.port, rng))
    assert done > 0
    await _still_serves(server)
