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

from server.core.settings import Settings
from server.errors import close_code_for

__all__ = ["SocketifyCompat", "oversize_refusal", "patch_socketify_upgrade", "run_socketify", "run_uvicorn",
           "use_standard_tasks", "uvicorn_ws_options"]

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
        if stype == "http":
            http = _HttpGuard(receive, send)
            try:
                await self.app(scope, receive, http.send)
            finally:
                await http.settle()
            return
        if stype != "websocket":
            await self.app(scope, receive, send)
            return
        scope.pop("method", None)

        guard = _NativeGuard(receive, send)
        buffered = guard.buffered_amount()
        if buffered is not None:
            scope.setdefault("extensions", {})["parley.buffered_amount"] = buffered

        async def fixed_receive() -> MutableMapping[str, Any]:
            if guard.gone_before_upgrade():
                return {"type": "websocket.disconnect", "code": 1006}
            event = await receive()
            if event.get("type") == "websocket.receive" and event.get("text") is None and event.get("bytes") is None:
                event = {"type": "websocket.receive", "bytes": b""}
            return event

        try:
            await self.app(scope, fixed_receive, guard.send)
        finally:
            await guard.settle()


_PEERLESS_OK = frozenset({"websocket.publish"})  # app-wide in uWS: needs no live socket


class _NativeGuard:
    """socketify's ``send`` calls into uWS with its raw socket pointer, and once the socket is
    gone (``ws.ws`` is None) subscribe, unsubscribe and close fall back to the upgrade's HTTP
    response, which uWS has already freed: a peer that hangs up while the app is still busy
    (a hello followed by an immediate close) then segfaulted the process. socketify's close and
    abort callbacks keep the socket's state on its ``ASGIWebSocket`` (``receive`` is bound to
    it); read that before every call and drop what would touch a closed socket."""

    def __init__(self, receive: Receive, send: Send) -> None:
        native = getattr(receive, "__self__", None)
        # Anything else is not socketify's websocket object: nothing native to protect.
        self.native = native if hasattr(native, "ws") and hasattr(native, "aborted") else None
        self._send = send
        self.upgraded = False
        self.answered = False

    def buffered_amount(self) -> Callable[[], int] | None:
        """What uWS holds unsent for this socket (its backpressure), 0 once it is gone: the app
        watches it to end a slow reader itself, with the frames saying why, before uWS's own
        limit closes it without a word."""
        native, ssl = self.native, _closure_var(self._send, "ssl")
        if native is None or ssl is None:
            return None
        from socketify.native import lib

        def amount() -> int:
            ws = native.ws
            return 0 if ws is None or native.aborted else int(lib.uws_ws_get_buffered_amount(ssl, ws))

        return amount

    def gone_before_upgrade(self) -> bool:
        return self.native is not None and self.native.aborted

    async def send(self, event: MutableMapping[str, Any]) -> Any:
        native = self.native
        if native is None:
            return await self._send(event)
        etype = event.get("type")
        if native.aborted:
            return False
        if etype == "websocket.accept":
            # From here on the HTTP response handle belongs to uWS's websocket, whatever happens.
            self.upgraded = self.answered = True
            return await self._send(event)
        if self.upgraded:
            if native.ws is None and etype not in _PEERLESS_OK:
                return False
        elif etype == "websocket.close":
            self.answered = True  # a 403 ends the HTTP response
        return await self._send(event)

    async def settle(self) -> None:
        """An app that ends without accepting or refusing leaves the upgrade's response pending,
        and its abort callback would later find the ``ASGIWebSocket`` garbage-collected (a fatal
        cffi error): refuse it."""
        if self.native is not None and not self.answered and not self.native.aborted:
            await self.send({"type": "websocket.close", "code": close_code_for("internal")})


def _closure_var(fn: Any, name: str) -> Any:
    code = getattr(fn, "__code__", None)
    cells = getattr(fn, "__closure__", None)
    if code is None or cells is None or name not in code.co_freevars:
        return None
    return cells[code.co_freevars.index(name)].cell_contents


_discard_body: Any = None


def _body_sink() -> Any:
    """A data callback that drops a request body nobody will read; it lives as long as the
    process, so uWS can always call it."""
    global _discard_body
    if _discard_body is None:
        from socketify.native import ffi

        @ffi.callback("void(uws_res_t*, const char*, size_t, bool, void*)")  # type: ignore[untyped-decorator]
        def discard(res: Any, chunk: Any, chunk_length: int, is_end: bool, user_data: Any) -> None:
            return None

        _discard_body = discard
    return _discard_body


class _HttpGuard:
    """socketify hands uWS its ``ASGIDataQueue`` as the request body callback's handle, and uWS
    keeps calling it for a body still arriving after the response ended (a 404, 401 or 413
    answered before the body is read). Once the app returns, that object is garbage, and the
    next chunk is a fatal cffi error that kills the process. Right after the final body is
    written (still in the same loop step, so the response is valid) the body callback is
    switched to one that lives forever and drops the rest."""

    def __init__(self, receive: Receive, send: Send) -> None:
        ctx = _closure_var(receive, "ctx")
        self.ctx = ctx if all(hasattr(ctx, a) for a in ("data_queue", "response", "ssl", "aborted")) else None
        self._send = send
        self.responded = False

    async def send(self, event: MutableMapping[str, Any]) -> Any:
        result = await self._send(event)
        ctx = self.ctx
        if ctx is None or event.get("type") != "http.response.body" or event.get("more_body", False):
            return result
        # No await between the write above and this: uWS cannot have freed the response.
        self.responded = True
        queue = ctx.data_queue
        if queue is not None and not queue.is_end and not ctx.aborted:
            from socketify.native import ffi, lib

            lib.uws_res_on_data(ctx.ssl, ctx.response, _body_sink(), ffi.NULL)
        return result

    async def settle(self) -> None:
        """An app that ends without a response leaves the request pending, and its abort
        callback would later find socketify's context garbage-collected: answer it."""
        if self.ctx is not None and not self.responded and not self.ctx.aborted:
            await self.send({"type": "http.response.start", "status": 500, "headers": []})
            await self.send({"type": "http.response.body", "body": b""})


def patch_socketify_upgrade() -> None:
    """socketify's upgrade callback reads the peer's address with ``ffi.unpack``, which raises on
    the NULL it gets when the peer is already gone (a reset right after the request). The raise
    leaves the half-built ``ASGIWebSocket`` to the garbage collector while uWS still holds it as
    the request's abort callback, and the abort then kills the process. Give the callback empty
    strings instead of NULLs. Must run before ``_ASGI`` is built: it takes the callback by name."""
    from socketify import asgi

    if getattr(asgi, "_parley_upgrade_patched", False):
        return
    ffi = asgi.ffi
    original = asgi.ws_upgrade
    empty = ffi.new("char[]", b"")
    fields = ("full_url", "url", "query_string", "method", "remote_address")

    @ffi.callback("void(int, uws_res_t*, socketify_asgi_ws_data, uws_socket_context_t* socket, void*)")  # type: ignore[untyped-decorator]
    def ws_upgrade(ssl: Any, response: Any, info: Any, socket_context: Any, user_data: Any) -> None:
        for name in fields:
            if getattr(info, name) == ffi.NULL:
                setattr(info, name, empty)
                setattr(info, name + "_size", 0)
        original(ssl, response, info, socket_context, user_data)

    asgi._parley_ws_upgrade = ws_upgrade  # the callback must outlive every request
    asgi.ws_upgrade = ws_upgrade
    asgi._parley_upgrade_patched = True


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
            with contextlib.suppress(Exception):  # broad: shutdown goes on whatever a socket's drain raises
                await asyncio.wait_for(gateway.drain(), settings.shutdown_drain_s)
            await super().shutdown(sockets)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        **uvicorn_ws_options(settings),
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_interval_s,
        timeout_graceful_shutdown=int(settings.shutdown_drain_s) or 1,
        log_level="warning",
        lifespan="on",
    )
    Server(config).run()


def run_socketify(app: Litestar, settings: Settings, *, on_listen: Callable[[], None] | None = None) -> None:
    from socketify import AppListenOptions
    from socketify.asgi import _ASGI

    patch_socketify_upgrade()
    server = _ASGI(
        SocketifyCompat(app),  # type: ignore[arg-type]
        websocket_options={
            # Frames a little over the protocol limit still reach the app, which answers
            # too_long; larger ones uWS drops from their header (and closes with 1006, in C++,
            # before any callback could answer: uvicorn below does better).
            "max_payload_length": settings.transport_frame_bytes,
            "idle_timeout": settings.ws_idle_timeout_s,
            "compression": False,
            # uWS's own backpressure bound: it would close a reader this far behind without a word;
            # the gateway ends one itself a few frames before (slow_consumer, then bye).
            "max_backpressure": settings.ws_max_backpressure_bytes,
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
            with contextlib.suppress(Exception):  # broad: shutdown goes on whatever a socket's drain raises
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
        except Exception:  # broad: the last stop of a request task: log whatever escaped
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
