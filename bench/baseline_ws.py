"""The baseline: a plain ``websockets`` broadcast server with rooms.

A client joins the room named by the last segment of its path (``/r/<room>``) and is greeted
with ``{"type": "welcome"}``. Every ``{"type": "send", "text": ...}`` it sends is wrapped in a
message envelope shaped like Parley's ``message`` frame (id, seq, sender, text, created_at) and
broadcast to every member of the room, the sender included. No auth, no storage: the fan-out
cost of a plain Python WebSocket server, for the ratios in the benchmark.

    python bench/baseline_ws.py --port 9001
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
from datetime import UTC, datetime

from websockets.asyncio.server import ServerConnection, broadcast, serve

rooms: dict[str, set[ServerConnection]] = {}
_seq = itertools.count(1)


async def handler(ws: ServerConnection) -> None:
    room = ws.request.path.rsplit("/", 1)[-1] if ws.request is not None else "lobby"
    members = rooms.setdefault(room, set())
    members.add(ws)
    sender_id = f"c{id(ws):x}"
    try:
        await ws.send('{"type": "welcome"}')
        async for raw in ws:
            try:
                frame = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(frame, dict):
                continue
            if frame.get("type") == "ping":
                await ws.send('{"type": "pong"}')
                continue
            if frame.get("type") != "send":
                continue
            n = next(_seq)
            out = json.dumps({
                "type": "message", "conversation_id": room,
                "message": {"id": f"m{n}", "seq": n, "kind": "text",
                            "sender": {"kind": "user", "id": sender_id, "name": None},
                            "text": frame.get("text", ""), "citations": [],
                            "client_msg_id": frame.get("client_msg_id"),
                            "created_at": datetime.now(UTC).isoformat()},
            })
            broadcast(members, out)
    finally:
        members.discard(ws)
        if not members:
            rooms.pop(room, None)


async def main(port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with serve(handler, "127.0.0.1", port, compression=None, max_size=65536, ping_interval=20,
                     ping_timeout=20, backlog=2048):
        await stop


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--no-uvloop", action="store_true", help="use the stock asyncio loop")
    a = ap.parse_args()
    try:
        import uvloop
    except ImportError:
        uvloop = None
    if uvloop is not None and not a.no_uvloop:
        uvloop.run(main(a.port))
    else:
        asyncio.run(main(a.port))
