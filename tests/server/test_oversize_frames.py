"""Frames over the limits: the client is told ``too_long`` (the contract's error) rather than
seeing its socket vanish, and a frame too large for the transport is refused before it is read."""

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.support.live import LiveServer, free_port
from tests.support.ws import WsClient

LIMIT = 65536  # the contract's max_frame_bytes (default)
TRANSPORT = 2 * LIMIT  # the default transport limit


def _start(kind: str, data: Path, env: dict[str, str] | None = None) -> LiveServer:
    return LiveServer(kind, free_port(), data, env or {}).start(timeout=120)


@pytest.fixture(scope="module", params=["socketify", "uvicorn"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = _start(request.param, tmp_path_factory.mktemp(f"big-{request.param}"))
    yield srv
    srv.stop()


async def _until_closed(c: WsClient) -> tuple[list[dict[str, Any]], websockets.ConnectionClosed]:
    frames: list[dict[str, Any]] = []
    while True:
        try:
            frames.append(json.loads(await asyncio.wait_for(c.ws.recv(), 10)))
        except websockets.ConnectionClosed as closed:
            return frames, closed


async def _send_big(c: WsClient, size: int) -> None:
    # The server may refuse (and close) while the frame is still going out.
    with contextlib.suppress(websockets.ConnectionClosed):
        await c.send('{"type": "ping", "pad": "' + "x" * size + '"}')


async def _still_serves(srv: LiveServer) -> None:
    d = await WsClient.connect(srv.ws_url, srv.token("big-after"))
    await d.send({"type": "ping", "ref": "alive"})
    await d.expect("pong", ref="alive")
    await d.close()


async def test_frame_over_the_protocol_limit_gets_too_long_and_the_socket_stays(server: LiveServer) -> None:
    c = await WsClient.connect(server.ws_url, server.token("big-mid"))
    await _send_big(c, LIMIT + 1000)
    err = await c.expect("error")
    assert (err["code"], err["fatal"]) == ("too_long", False)
    await c.send({"type": "ping", "ref": "alive"})
    await c.expect("pong", ref="alive")
    await c.close()


@pytest.mark.parametrize("size", [TRANSPORT + 1000, 4_000_000])
async def test_frame_over_the_transport_limit_is_refused_with_too_long_and_bye_first(
        server: LiveServer, size: int) -> None:
    c = await WsClient.connect(server.ws_url, server.token("big-huge"))
    await _send_big(c, size)
    frames, closed = await _until_closed(c)
    if server.kind == "socketify":
        # uWS refuses the frame from its header and closes the socket inside C++ (1006), before
        # any callback runs: nothing can be said first. Its limit is a setting (see below).
        assert frames == [] and closed.rcvd is None
    else:
        assert [(f["type"], f["code"]) for f in frames] == [("error", "too_long"), ("bye", "too_long")]
        assert frames[0]["fatal"] is True and frames[1]["reconnect"] is False
        assert closed.rcvd is not None and closed.rcvd.code == 1009
    await _still_serves(server)


async def test_the_transport_limit_is_a_setting_on_socketify(tmp_path: Path) -> None:
    srv = _start("socketify", tmp_path / "s", {"PARLEY_MAX_TRANSPORT_FRAME_BYTES": str(1 << 20)})
    try:
        c = await WsClient.connect(srv.ws_url, srv.token("big-knob"))
        await _send_big(c, 500_000)  # over the default transport limit, under this one
        err = await c.expect("error")
        assert err["code"] == "too_long"
        await c.send({"type": "ping", "ref": "alive"})
        await c.expect("pong", ref="alive")
        await c.close()
    finally:
        srv.stop()
