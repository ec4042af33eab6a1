"""The composition root: ``create_app(settings)`` picks the adapters and wires the services.
Nothing else reads settings or chooses infrastructure."""

import gc
import logging
import os
from collections.abc import Awaitable, Callable
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
from server.chat.service import topic_agents, topic_conversation
from server.core.db import Database
from server.core.metrics import handoff_label
from server.core.models import Conversation, OutboxRow
from server.core.plugin import CorePlugin
from server.core.settings import Settings
from server.fanout import RedisBus
from server.fanout.plugin import FanoutPlugin
from server.handoff.plugin import HandoffPlugin
from server.handoff.router import Router
from server.migrations.plugin import StoragePlugin
from server.push.plugin import PushPlugin
from server.realtime.gateway import follow
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

    # The events between capabilities: wired here and nowhere else.
    if isinstance(bus, RedisBus):
        bus.on_recovered.append(gateway.catch_up)
    router = Router(chat, gateway.online_agents,
                    on_handoff=lambda reason: metrics.handoffs.labels(handoff_label(reason)).inc())
    router.on_status.append(metrics.on_router_status)
    gateway.on_handoff_request = lambda p, cid, reason: router.handoff(p.tenant_id, cid, reason="user_request")

    async def on_status(what: str, conv: Conversation) -> None:
        if conv.status == "assigned" and conv.assignee_id:
            await follow(gateway, conv.tenant_id, "agent", conv.assignee_id, topic_agents(conv.id))

    router.on_status.append(on_status)

    async def on_chat(what: str, conv: Conversation) -> None:
        await follow(gateway, conv.tenant_id, "user", conv.user_id, topic_conversation(conv.id))
        await on_status(what, conv)

    chat.listeners.append(on_chat)
    agent = AgentPlugin(settings, db, chat, router, metrics, core.background, core.readiness_probes)
    router.on_status.append(_chat_event_writer(db))

    plugins = [core, storage, DemoPlugin(settings, db, agent), fanout, core.background, realtime,
               HandoffPlugin(router), agent, AccountsPlugin(settings, core.background),
               PushPlugin(settings, db, gateway), ApiPlugin(), AttachmentsPlugin(db, settings)]
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


def _chat_event_writer(db: Database) -> Callable[[str, Conversation], Awaitable[None]]:
    """Handoffs and resolutions enter the push engine's behaviour stream through the outbox."""

    async def write(what: str, conv: Conversation) -> None:
        name = {"resolve": "conversation.resolved", "claim": "conversation.assigned"}.get(what)
        if what.startswith("handoff:"):
            name = "conversation.handoff"
        if name is None:
            return
        async with db.write() as s:
            s.add(OutboxRow(tenant_id=conv.tenant_id, topic="push", payload={
                "kind": "chat.event", "event_id": f"{conv.id}:{name}:{conv.last_seq}", "user_id": conv.user_id,
                "name": name, "properties": {"conversation_id": conv.id, "status": conv.status,
                                             "reason": conv.handoff_reason}}))

    return write
