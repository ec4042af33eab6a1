"""Running the app: socketify (default, with an ASGI compatibility layer and the graceful
shutdown socketify lacks) or uvicorn. Both serve the same ``create_app`` result."""

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from litestar import Litestar

from server.settings import Settings

__all__ = ["SocketifyCompat", "oversize_refusal", "run_socketify", "run_uvicorn", "use_standard_tasks",
           "uvicorn_ws_options"]

log = logging.getLogger("parley.serving")
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[Any]]


class SocketifyCompat:
    """Fixes, in front of the app, what socketify 0.0.31 gets wrong in ASGI scopes and events:
    a ``method`` key in WebSocket scopes (Litestar then answers 403), a query string with a
    leading ``?``, and an empty binary frame delivered as ``bytes: None``."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stype = scope.get("type")
        if stype in ("http", "websocket"):
            qs = scope.get("query_string", b"")
            if qs.startswith(b"?"):
                scope["query_string"] = qs[1:]
        if stype != "websocket":
            await self.app(scope, receive, send)
            return
        scope.pop("method", None)

        async def fixed_receive() -> MutableMapping[str, Any]:
            event = await receive()
            if event.get("type") == "websocket.receive" and event.get("text") is None and event.get("bytes") is None:
                event = {"type": "websocket.receive", "bytes": b""}
            return event

        await self.app(scope, fixed_receive, _native_guard(receive, send))


_PEERLESS_OK = frozenset({"websocket.publish"})  # app-wide in uWS: needs no live socket


def _native_guard(receive: Receive, send: Send) -> Send:
    """socketify's ``send`` calls into uWS with its raw socket pointer, and once the socket is
    gone (``ws.ws`` is None) subscribe, unsubscribe and close fall back to the upgrade's HTTP
    response, which uWS has already freed: a peer that hangs up while the app is still busy
    (a hello followed by an immediate close) then segfaults the process. socketify's close
    callback keeps the socket's state on its ``ASGIWebSocket`` (``receive`` is bound to it);
    read that before every call and drop what would touch a closed socket."""
    native = getattr(receive, "__self__", None)
    if native is None or not hasattr(native, "ws") or not hasattr(native, "aborted"):
        return send  # not socketify's websocket object: nothing native to protect
    upgraded = False

    async def guarded(event: MutableMapping[str, Any]) -> Any:
        nonlocal upgraded
        etype = event.get("type")
        if native.aborted:
            return False
        if etype == "websocket.accept":
            # From here on the HTTP response handle belongs to uWS's websocket, whatever happens.
            upgraded = True
            return await send(event)
        if upgraded and native.ws is None and etype not in _PEERLESS_OK:
            return False
        return await send(event)

    return guarded


def oversize_refusal(settings: Settings) -> tuple[bytes, ...]:
    """What the contract says before a close for a frame the transport would not even read."""
    detail = f"frame is larger than {settings.max_frame_bytes} bytes"
    return (json.dumps({"type": "error", "code": "too_long", "detail": detail, "fatal": True}).encode(),
            json.dumps({"type": "bye", "code": "too_long", "detail": detail, "reconnect": False}).encode())


def uvicorn_ws_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's WebSocket settings: a frame a little over the protocol limit still gets a clear
    ``too_long`` from the app; a larger one is refused from its header, before it is buffered,
    with the error and ``bye`` frames sent ahead of the 1009 close."""
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.frames import CloseCode, Frame, Opcode
    from websockets.protocol import State
    from websockets.server import ServerProtocol

    refusal = oversize_refusal(settings)

    class RefusingServerProtocol(ServerProtocol):
        def fail(self, code: CloseCode | int, reason: str = "") -> None:
            if code == CloseCode.MESSAGE_TOO_BIG and self.state is State.OPEN:
                for data in refusal:
                    self.send_frame(Frame(Opcode.TEXT, data))
            super().fail(code, reason)

    class RefusingWebSocketProtocol(WebSocketsSansIOProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # uvicorn builds its websockets connection inline; only ``fail`` differs.
            self.conn.__class__ = RefusingServerProtocol

    return {"ws": RefusingWebSocketProtocol, "ws_max_size": settings.transport_frame_bytes,
            "ws_per_message_deflate": False}


def run_uvicorn(app: Litestar, settings: Settings) -> None:
    import uvicorn

    gateway = app.state.gateway

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            # uvicorn closes sockets with 1012 before lifespan shutdown runs; tell clients first.
            for srv in self.servers:
                srv.close()
            gateway.draining = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(gateway.drain(), settings.shutdown_drain_s)
            await super().shutdown(sockets)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        **uvicorn_ws_options(settings),
        ws_ping_interval=20,
        ws_ping_timeout=20,
        timeout_graceful_shutdown=int(settings.shutdown_drain_s) or 1,
        log_level="warning",
        lifespan="on",
    )
    Server(config).run()


def run_socketify(app: Litestar, settings: Settings, *, on_listen: Callable[[], None] | None = None) -> None:
    from socketify import AppListenOptions
    from socketify.asgi import _ASGI

    server = _ASGI(
        SocketifyCompat(app),  # type: ignore[arg-type]
        websocket_options={
            # Frames a little over the protocol limit still reach the app, which answers
            # too_long; larger ones uWS drops from their header (and closes with 1006, in C++,
            # before any callback could answer: uvicorn below does better).
            "max_payload_length": settings.transport_frame_bytes,
            "idle_timeout": 60,
            "compression": False,
            # uWS's own backpressure bound for native topic fan-out: a reader this far behind is closed.
            "max_backpressure": 4 * 1024 * 1024,
            "close_on_backpressure_limit": 1,
        },
        lifespan=True,
    )
    use_standard_tasks(server)
    stopping = False
    uws = server.server
    gateway = app.state.gateway

    def graceful(signum: int, _frame: Any) -> None:
        nonlocal stopping
        if stopping:
            os._exit(1)
        stopping = True
        log.warning("signal %s: draining", signum)
        gateway.draining = True

        async def drain() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(gateway.drain(), settings.shutdown_drain_s)
            await asyncio.sleep(0.05)
            uws.close()  # closes the listen socket and stops the loop; lifespan shutdown follows

        uws.loop.ensure_future(drain())

    def listening(config: Any) -> None:
        signal.signal(signal.SIGTERM, graceful)
        signal.signal(signal.SIGINT, graceful)
        log.warning("parley listening on http://%s:%s (socketify)", settings.host, config.port)
        if on_listen is not None:
            on_listen()

    # socketify installs its own SIGINT handler (exit without shutdown) when its loop starts.
    uws.loop.ensure_future(_reinstall(graceful))
    # With lifespan on, listen() runs the loop until close(). socketify's own run() would then
    # start the loop again and never run lifespan shutdown, so shut down here instead.
    server.listen(AppListenOptions(port=settings.port, host=settings.host), listening)
    if server.status in (1, 6):
        server.status = 3
        server.stop_future.set_result({"type": "lifespan.shutdown", "asgi": {"version": "3.0", "spec_version": "2.3"}})

        async def until_stopped() -> None:
            while server.status == 3:
                await asyncio.sleep(0.01)

        # run_once() steps the loop without marking it running, which breaks asyncio code in
        # the app's shutdown hooks; run the loop properly until shutdown completes.
        uws.loop.run_until_complete(until_stopped())
    log.warning("parley stopped")


def use_standard_tasks(server: Any) -> None:
    """socketify runs every request, and through its loop's task factory every task, in its own
    ``RequestTask``, which ``asyncio.current_task()`` does not know. anyio then fails to exit its
    cancel scopes, so httpx (the OpenAI client, push providers) and Litestar's task groups break.
    Use plain asyncio Tasks instead, holding a reference until each one ends."""
    loop = server.server.loop.loop
    loop.set_task_factory(None)
    running: set[asyncio.Task[Any]] = set()

    async def guarded(coro: Awaitable[Any]) -> None:
        try:
            await coro
        except Exception:
            log.exception("unhandled error in a request task")

    def run_task(coro: Awaitable[Any]) -> None:
        task = loop.create_task(guarded(coro))
        running.add(task)
        task.add_done_callback(running.discard)

    server._run_task = run_task


async def _reinstall(handler: Callable[[int, Any], None]) -> None:
    await asyncio.sleep(0)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
