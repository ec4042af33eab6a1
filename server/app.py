"""The composition root: ``create_app(settings)`` picks the adapters and wires the services.
Nothing else reads settings or chooses infrastructure."""

import gc
import logging
import os
from collections.abc import Callable
from typing import Any, Literal

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.events.emitter import BaseEventEmitterBackend
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from server import errors
from server.accounts.plugin import AccountsPlugin
from server.agent.plugin import AgentPlugin, DemoPlugin
from server.api.plugin import ApiPlugin
from server.attachments.plugin import AttachmentsPlugin
from server.core.plugin import CorePlugin
from server.core.settings import Settings
from server.desk.plugin import DeskPlugin
from server.event_wiring import wire_events
from server.fanout.plugin import FanoutPlugin
from server.handoff.plugin import HandoffPlugin
from server.handoff.router import Router
from server.handoff.snooze import SnoozeWaker
from server.migrations.plugin import StoragePlugin
from server.push.plugin import PushPlugin
from server.realtime.plugin import RealtimePlugin
from server.web import web_handlers

__all__ = ["create_app"]


class _NoEvents(BaseEventEmitterBackend):
    """Parley uses no Litestar events. The default emitter's anyio task group fails to exit
    under socketify's own Task class, so it is replaced by one that starts nothing."""

    async def __aenter__(self) -> "_NoEvents":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def emit(self, event_id: str, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("Parley does not use Litestar events")

log = logging.getLogger("parley")
ServerKind = Literal["uvicorn", "socketify"]


def _fault_hook(point: str | None) -> Callable[[str], None] | None:
    """Crash tests kill the process at one named point of the send path."""
    if not point:
        return None

    def hook(name: str) -> None:
        if name == point:
            os._exit(17)

    return hook


def create_app(settings: Settings, *, server_kind: ServerKind = "uvicorn",
               fault_point: str | None = None) -> Litestar:
    """Settings -> plugins. Each capability builds its services and registers its routes,
    dependencies, state and lifespan; the plugin order below is the start-up order, and
    shutdown runs it backwards (push, bot runner, gateway drain, background tasks, bus, database)."""
    core = CorePlugin(settings)
    storage = StoragePlugin(settings)
    fanout = FanoutPlugin(settings, native=server_kind == "socketify")
    realtime = RealtimePlugin(settings, storage.db, fanout.bus, core.metrics, core.limiter,
                              native=server_kind == "socketify", fault_hook=_fault_hook(fault_point))
    db, bus, chat, gateway, metrics = storage.db, fanout.bus, realtime.chat, realtime.gateway, core.metrics

    # The events between capabilities: wired in server/event_wiring.py and nowhere else.
    router = Router(chat, gateway.online_agents, assign_batch=settings.queue_assign_batch,
                    publish_max=settings.queue_publish_max, topic_messages=settings.routing_topic_messages)
    agent = AgentPlugin(settings, db, chat, router, metrics, core.background, core.readiness_probes)
    wire_events(bus.events, gateway=gateway, router=router, bot_runner=agent.bot_runner, metrics=metrics)

    plugins = [core, storage, DemoPlugin(settings, db, agent), fanout, core.background, realtime,
               HandoffPlugin(router, waker=SnoozeWaker(chat, poll_s=settings.snooze_poll_s),
                             background=core.background), agent, AccountsPlugin(settings, core.background),
               PushPlugin(settings, db, gateway), ApiPlugin(), AttachmentsPlugin(db, settings),
               DeskPlugin()]
    return Litestar(
        route_handlers=web_handlers,
        plugins=plugins,
        # Everything loaded at start-up lives as long as the process: keep the collector off it, or a
        # full collection over the AI and knowledge stack pauses every socket for a few 100 ms.
        on_startup=[_freeze_gc],
        exception_handlers=errors.exception_handlers(),
        # The JSON schema only: Litestar's documentation UIs load their scripts from CDNs.
        openapi_config=OpenAPIConfig(title="Parley", version="1.0.0", path="/schema",
                                     render_plugins=[JsonRenderPlugin()]),
        request_max_body_size=settings.max_request_bytes,
        debug=False,
        event_emitter_backend=_NoEvents,
        # The widget embedded on a business's site calls the REST API from that origin.
        cors_config=CORSConfig(allow_origins=settings.allowed_origins, allow_credentials=False,
                               allow_headers=["Authorization", "Content-Type"])
        if settings.allowed_origins else None,
        # Logging is configured by whoever runs the app (the CLI), not by the framework.
        logging_config=None,
    )


def _freeze_gc() -> None:
    gc.collect()
    gc.freeze()
