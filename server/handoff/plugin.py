"""Handoff as a Litestar plugin: the router (queue, assignment, status changes) by name, and the
snooze waker as a background task."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.plugins import InitPluginProtocol

from server.core.plugin import Background, provide
from server.handoff.router import Router
from server.handoff.snooze import SnoozeWaker

__all__ = ["HandoffPlugin"]


class HandoffPlugin(InitPluginProtocol):
    def __init__(self, router: Router, *, waker: SnoozeWaker | None = None,
                 background: Background | None = None) -> None:
        self.router = router
        self.waker = waker
        self.background = background

    @asynccontextmanager
    async def _lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        if self.waker is not None and self.background is not None:
            self.background.spawn(self.waker.run(), name="parley-snooze-waker")
        yield

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.state["router"] = self.router
        app_config.dependencies["router"] = provide(self.router)
        app_config.lifespan.append(self._lifespan)
        return app_config
