"""The core capability as a Litestar plugin: settings, metrics, the rate limiter, the readiness
probes and the process's background tasks, each offered to handlers by name."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.plugins import InitPluginProtocol

from server.core.metrics import Metrics
from server.core.ratelimit import build_limiter
from server.core.settings import Settings

__all__ = ["Background", "CorePlugin", "ReadinessProbes", "provide"]

#: Extra readiness checks by name (``/readyz``): each answers True when its part is ready.
ReadinessProbes = dict[str, Callable[[], Awaitable[bool]]]


def provide(value: object) -> Provide:
    """A dependency that is always this one object (a service built at start-up)."""
    return Provide(lambda: value, use_cache=True, sync_to_thread=False)


class Background(InitPluginProtocol):
    """The process's long-running tasks. Its place in the plugin list is where they are
    cancelled on shutdown (after the gateway has drained, before the bus stops)."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[Any]] = []

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> "asyncio.Task[Any]":
        return self.add(asyncio.create_task(work, name=name))

    def add(self, task: "asyncio.Task[Any]") -> "asyncio.Task[Any]":
        self.tasks.append(task)
        return task

    async def cancel_all(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(BaseException):  # a cancelled task's own failure is not shutdown's
                await task
        self.tasks.clear()

    @asynccontextmanager
    async def _lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.cancel_all()

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.state["background"] = self.tasks
        app_config.lifespan.append(self._lifespan)
        return app_config


class CorePlugin(InitPluginProtocol):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics(max_tenants=settings.metrics_max_tenants)
        self.limiter = build_limiter(settings)
        self.readiness_probes: ReadinessProbes = {}
        self.background = Background()

    @asynccontextmanager
    async def _lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.limiter.close()

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.state.update(settings=self.settings, metrics=self.metrics, limiter=self.limiter,
                                readiness_probes=self.readiness_probes)
        app_config.dependencies.update(settings=provide(self.settings), metrics=provide(self.metrics),
                                       limiter=provide(self.limiter),
                                       readiness_probes=provide(self.readiness_probes))
        app_config.lifespan.append(self._lifespan)
        return app_config
