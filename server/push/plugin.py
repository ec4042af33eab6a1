"""Push as a Litestar plugin: its REST routes, the engine by name (``push_engine``), and the
in-process worker started with the app and stopped (rows in hand finished) on shutdown."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.plugins import InitPluginProtocol

from server.core.db import Database
from server.core.plugin import provide
from server.core.settings import Settings
from server.push.routes import push_route_handlers
from server.push.wiring import PushRuntime

__all__ = ["PushPlugin"]


class PushPlugin(InitPluginProtocol):
    def __init__(self, settings: Settings, db: Database, gateway: Any) -> None:
        self.runtime = PushRuntime(db, gateway, settings.push)

    @asynccontextmanager
    async def _lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        self.runtime.start()
        try:
            yield
        finally:
            await self.runtime.stop()

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers.extend(push_route_handlers)
        app_config.state["push"] = self.runtime
        app_config.dependencies["push_engine"] = provide(self.runtime.engine)
        app_config.lifespan.append(self._lifespan)
        return app_config
