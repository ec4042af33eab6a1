"""A visitor who hangs up while the server is still working on its socket must not take the
server down: socketify's native subscribe/close on a socket that is already gone used to
segfault the process after a few dozen anonymous connect -> hello -> close cycles."""

import asyncio
import json
import random
import time
from collections.abc import Iterator
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
    srv = LiveServer(request.param, free_port(), data, {}).start(timeout=60)
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


async def _hammer(srv: LiveServer, token: str, rng: random.Random | None) -> int:
    deadline = time.monotonic() + BUDGET_S
    done = 0

    async def worker(n: int) -> None:
        nonlocal done
        for _ in range(n):
            if time.monotonic() > deadline or (srv.proc is not None and srv.proc.poll() is not None):
                return
            try:
                await _cycle(srv.ws_url, token, rng)
            except (OSError, websockets.WebSocketException, TimeoutError):
                await asyncio.sleep(0.05)  # the server is gone or refusing: the checks below say which
            done += 1

    await asyncio.gather(*(worker(CYCLES[srv.kind] // WORKERS) for _ in range(WORKERS)))
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
    done = await _hammer(server, widget_token(server), None)
    assert done > 0
    await _still_serves(server)


async def test_random_delays_between_connect_hello_and_close(server: LiveServer) -> None:
    done = await _hammer(server, widget_token(server), random.Random(16))
    assert done > 0
    await _still_serves(server)
