"""Handoff as a Litestar plugin: the router (queue, assignment, status changes) by name."""

from litestar.config.app import AppConfig
from litestar.plugins import InitPluginProtocol

from server.core.plugin import provide
from server.handoff.router import Router

__all__ = ["HandoffPlugin"]


class HandoffPlugin(InitPluginProtocol):
    def __init__(self, router: Router) -> None:
        self.router = router

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.state["router"] = self.router
        app_config.dependencies["router"] = provide(self.router)
        return app_config
