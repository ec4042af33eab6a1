"""Chat and its sockets as a Litestar plugin: the write path (``ChatService``), the WebSocket
gateway and its ``/v1/ws`` endpoint. On shutdown the gateway drains its sockets first."""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, websocket
from litestar.config.app import AppConfig
from litestar.connection import WebSocket
from litestar.plugins import InitPluginProtocol

from server.chat.service import ChatService
from server.core.db import Database
from server.core.metrics import Metrics
from server.core.plugin import provide
from server.core.ratelimit import Limiter
from server.core.settings import Settings
from server.fanout.bus import Bus
from server.realtime.gateway import Gateway

__all__ = ["RealtimePlugin"]


class RealtimePlugin(InitPluginProtocol):
    def __init__(self, settings: Settings, db: Database, bus: Bus, metrics: Metrics, limiter: Limiter, *,
                 native: bool, fault_hook: Callable[[str], None] | None = None) -> None:
        self.chat = ChatService(db, bus, max_text_chars=settings.max_text_chars, fault_hook=fault_hook,
                                chat_push_delay_s=settings.push.chat_reply_delay_s,
                                max_attachments=settings.attachment_max_per_message,
                                eta_per_position_s=settings.queue_eta_per_position_s,
                                write_batch_max=settings.write_batch_max,
                                write_batch_wait_us=settings.write_batch_wait_us,
                                write_batches_in_flight=settings.write_batches_in_flight)
        self.gateway = Gateway(settings, db, self.chat, bus, metrics, native=native, limiter=limiter)

    @asynccontextmanager
    async def _lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        # after the bus has started (its plugin comes first): events from other nodes, presence
        await self.chat.bridge.start()
        await self.gateway.presence.start()
        try:
            yield
        finally:
            await self.gateway.drain()
            await self.gateway.presence.stop()

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        gateway = self.gateway

        @websocket("/v1/ws")
        async def ws_endpoint(socket: WebSocket[Any, Any, Any]) -> None:
            await gateway.handle(socket)

        app_config.route_handlers.append(ws_endpoint)
        app_config.state.update(chat=self.chat, gateway=self.gateway)
        app_config.dependencies.update(chat=provide(self.chat), gateway=provide(self.gateway))
        app_config.lifespan.append(self._lifespan)
        return app_config
