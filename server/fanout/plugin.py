"""The bus as a Litestar plugin: in-process, or Redis when ``PARLEY_REDIS_URL`` is set; started
before the workers, stopped after the gateway has drained and the background work has ended."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.plugins import InitPluginProtocol

from server.core.plugin import provide
from server.core.settings import Settings
from server.fanout.bus import Bus, MemoryBus, RedisBus
from server.fanout.local import LocalFanout, NativeFanout, PythonFanout

__all__ = ["FanoutPlugin"]


class FanoutPlugin(InitPluginProtocol):
    def __init__(self, settings: Settings, *, native: bool) -> None:
        # What uWS holds for a reader is looked at every quarter of the room left above the
        # gateway's slow-reader limit (Settings.ws_slow_reader_bytes) before uWS's own.
        room = settings.ws_max_backpressure_bytes - settings.ws_slow_reader_bytes
        local: LocalFanout = NativeFanout(check_bytes=max(0, room // 4)) if native else PythonFanout()
        self.bus: Bus = RedisBus.from_settings(local, settings) if settings.redis_url else MemoryBus(local)

    @asynccontextmanager
    async def _lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        await self.bus.start()
        try:
            yield
        finally:
            await self.bus.stop()

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.state["bus"] = self.bus
        app_config.dependencies["bus"] = provide(self.bus)
        app_config.lifespan.append(self._lifespan)
        return app_config
