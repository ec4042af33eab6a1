"""The desk wires itself into the app as a Litestar plugin: its REST routes (the ``db``,
``settings`` and ``principal`` dependencies come from the storage, core and API plugins)."""

from litestar.config.app import AppConfig
from litestar.plugins import InitPluginProtocol

from server.desk.routes import desk_handlers

__all__ = ["DeskPlugin"]


class DeskPlugin(InitPluginProtocol):
    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers.extend(desk_handlers)
        return app_config
