"""The database as a Litestar plugin: on start-up the private data dir, the secret box, the
schema migrations and the resealing of clear values; on shutdown the pool is disposed."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.plugins import InitPluginProtocol

from server.core.db import Database
from server.core.plugin import provide
from server.core.secretbox import load_or_create_key, private_dir, reseal_clear_values
from server.core.settings import Settings
from server.migrations import upgrade

__all__ = ["StoragePlugin"]

log = logging.getLogger("parley")


class StoragePlugin(InitPluginProtocol):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database.from_settings(settings)

    @asynccontextmanager
    async def _lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        private_dir(self.settings.data_dir)
        self.db.use_secret_box(load_or_create_key(self.settings.secret_key, self.settings.data_dir))
        await upgrade(self.db)
        await reseal_clear_values(self.db)
        try:
            yield
        finally:
            try:
                await self.db.dispose()
            except Exception:
                log.exception("shutdown failed")
                raise

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.state["db"] = self.db
        app_config.dependencies["db"] = provide(self.db)
        app_config.lifespan.append(self._lifespan)
        return app_config
