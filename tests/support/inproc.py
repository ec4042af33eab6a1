"""In-process servers: ``create_app(Settings(...))`` served by uvicorn in a background thread on
a free loopback port, for tests that need two app instances in one process, reach into app
state, or want to avoid the start-up cost of a ``parley serve`` subprocess.

Also a small TCP proxy (:class:`TcpProxy`) to make a shared service (Redis) "go down" for one
app without touching the real server that other tests use."""

import asyncio
import contextlib
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from server.core.settings import Settings
from server.realtime.serving import uvicorn_ws_options
from tests.support.live import RestHelpers, free_port

__all__ = ["FAST", "FAST_ENV", "InProcServer", "TcpProxy", "make_settings"]

# Limits that a load test must not trip over (the e2e suite checks the real defaults).
FAST: dict[str, Any] = {
    "rate_per_connection": 1_000_000.0,
    "burst_per_connection": 1_000_000,
    "rate_per_user": 1_000_000.0,
    "burst_per_user": 1_000_000,
    "rate_per_tenant": 1_000_000.0,
    "burst_per_tenant": 1_000_000,
    "rate_replay_per_user": 1_000_000.0,
    "burst_replay_per_user": 1_000_000,
    "max_pending_handshakes_per_ip": 100_000,
    "rate_widget_sessions_per_ip": 1_000_000.0,
    "burst_widget_sessions_per_ip": 1_000_000,
    "rate_widget_sessions_per_tenant": 1_000_000.0,
    "burst_widget_sessions_per_tenant": 1_000_000,
    "max_connections_per_user": 200,
}
# The same for a ``parley serve`` subprocess (tests.support.live.LiveServer).
FAST_ENV: dict[str, str] = {f"PARLEY_{k.upper()}": str(v) for k, v in FAST.items()}


def make_settings(data_dir: Path, database_url: str | None = None, **overrides: Any) -> Settings:
    """Settings with a private data dir (the SQLite file and the demo admin key live there) and
    the given database; every other value is the default unless overridden."""
    data_dir.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "host": "127.0.0.1",
        "port": free_port(),
        "server": "uvicorn",
        "demo": True,
        "demo_knowledge": False,  # loading the demo knowledge base embeds documents: seconds of CPU
    }
    values.update(overrides)
    return Settings(**values)


class InProcServer(RestHelpers):
    """One app on uvicorn in a daemon thread with its own event loop.

    The REST helpers mirror :class:`tests.support.live.LiveServer` (``token``, ``agent``,
    ``admin``) so a test can run against either."""

    def __init__(self, settings: Settings, *, fault_point: str | None = None) -> None:
        from litestar.exceptions import LitestarDeprecationWarning

        from server.app import create_app

        self.settings = settings
        self.port = settings.port
        self.data_dir = settings.data_dir
        with warnings.catch_warnings():
            # Litestar 2.x warns that the ``principal`` dependency is inferred (it works until
            # Litestar 3); not what these tests are about, and warnings are errors here.
            warnings.simplefilter("ignore", LitestarDeprecationWarning)
            self.app = create_app(settings, server_kind="uvicorn", fault_point=fault_point)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> "InProcServer":
        import uvicorn

        gateway = self.app.state.gateway
        drain_s = self.settings.shutdown_drain_s

        class Server(uvicorn.Server):
            async def shutdown(self, sockets: Any = None) -> None:
                # As ``run_uvicorn``: tell clients (bye) before uvicorn closes their sockets.
                for srv in self.servers:
                    srv.close()
                gateway.draining = True
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(gateway.drain(), drain_s)
                await super().shutdown(sockets)

        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            **uvicorn_ws_options(self.settings),
            ws_ping_interval=None,
            timeout_graceful_shutdown=2,
            log_level="error",
            lifespan="on",
        )
        self._server = Server(config)

        def run() -> None:
            try:
                asyncio.run(self._server.serve())
            except BaseException as exc:  # noqa: BLE001 (the server thread hands whatever ended it to the test)
                self._error = exc

        self._thread = threading.Thread(target=run, name=f"parley-inproc-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"in-process server failed to start: {self._error!r}")
            if self._server.started:
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"in-process server did not start in {timeout}s")

    def stop(self, timeout: float = 15.0) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(5)
        self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine on the server's own event loop (for objects bound to it)."""
        loop = self._loop()
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    def _loop(self) -> asyncio.AbstractEventLoop:
        for srv in getattr(self._server, "servers", []):
            loop = srv.get_loop()
            if loop is not None:
                return loop  # type: ignore[no-any-return]
        raise RuntimeError("server loop not running")

    def __enter__(self) -> "InProcServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TcpProxy:
    """A loopback TCP relay in its own thread. ``down()`` drops every relayed connection and
    refuses new ones (like a killed server); ``up()`` accepts again on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"tcp-proxy-{self.port}", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def up(self) -> None:
        self._run(self._up())

    def down(self) -> None:
        self._run(self._down())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _up(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                w.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))
