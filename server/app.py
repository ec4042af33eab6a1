"""The composition root: ``create_app(settings)`` picks the adapters and wires the services.
Nothing else reads settings or chooses infrastructure."""

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

from litestar import Litestar, Request, Response, websocket
from litestar.config.cors import CORSConfig
from litestar.connection import WebSocket
from litestar.datastructures import State
from litestar.di import Provide
from litestar.events.emitter import BaseEventEmitterBackend
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from server.accounts.login_guard import LoginGuard, login_limits
from server.accounts.passwords import PasswordHashing
from server.accounts.tenants import ensure_demo_tenant
from server.agent.knowledge import IngestWorker, KnowledgeRetriever, build_knowledge, load_demo_kb
from server.agent.runner import BotRunner
from server.api.auth import auth_handlers
from server.api.bots import bot_handlers
from server.api.conversations import conversation_handlers
from server.api.deps import get_principal
from server.api.health import health_handlers
from server.api.knowledge_bases import knowledge_handlers
from server.api.media import require_declared_body_type
from server.api.people import people_handlers
from server.api.stats import stats_handlers
from server.chat.service import ChatService
from server.core.db import Database
from server.core.events import Dispatcher
from server.core.metrics import Metrics
from server.core.ratelimit import build_limiter
from server.core.secretbox import load_or_create_key, private_dir, reseal_clear_values
from server.core.settings import Settings
from server.errors import ParleyError, error_body, status_for_code
from server.event_wiring import wire_events
from server.fanout import Bus, LocalFanout, MemoryBus, NativeFanout, PythonFanout, RedisBus
from server.handoff.router import Router
from server.push.routes import push_route_handlers
from server.push.settings import push_settings_from
from server.push.wiring import PushRuntime
from server.realtime.gateway import Gateway
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
    db = Database(settings.resolved_database_url(), pool_size=settings.db_pool_size)
    events = Dispatcher()
    local: LocalFanout = NativeFanout() if server_kind == "socketify" else PythonFanout()
    bus: Bus = RedisBus(local, settings.redis_url, events=events) if settings.redis_url else MemoryBus(local, events)
    metrics = Metrics()
    chat = ChatService(db, bus, max_text_chars=settings.max_text_chars, fault_hook=_fault_hook(fault_point))
    limiter = build_limiter(settings)
    gateway = Gateway(settings, db, chat, bus, metrics, native=server_kind == "socketify", limiter=limiter)
    router = Router(chat, gateway.online_agents)
    background: list[asyncio.Task[Any]] = []
    knowledge = build_knowledge(settings)
    retriever = KnowledgeRetriever(knowledge)
    llm = _build_llm(settings)
    bot_runner = BotRunner(db, chat, router, retriever, model=llm, metrics=metrics,
                           answer_deadline_s=settings.answer_deadline_s)
    ingest_worker = IngestWorker(db, settings, knowledge)
    push = PushRuntime(db, gateway, push_settings_from(settings))
    wire_events(events, gateway=gateway, router=router, bot_runner=bot_runner, metrics=metrics)

    async def retrieval_ready() -> bool:
        # A real retrieval: the embedder and the vector store both answer.
        await asyncio.to_thread(knowledge.embedder.embed, ["ready?"])
        await asyncio.to_thread(knowledge.list_kbs)
        return True

    state = State({
        "settings": settings, "db": db, "bus": bus, "chat": chat, "gateway": gateway, "metrics": metrics,
        "router": router, "background": background, "readiness_probes": {"retrieval": retrieval_ready},
        "demo": None, "knowledge": knowledge, "retriever": retriever, "llm": llm, "bot_runner": bot_runner,
        "ingest_worker": ingest_worker, "push": push, "limiter": limiter,
        "passwords": PasswordHashing(settings.password_hash_concurrency, settings.password_hash_queue_max),
        "login_guard": LoginGuard(login_limits(settings)),
    })

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        private_dir(settings.data_dir)
        from server.migrations import upgrade

        db.use_secret_box(load_or_create_key(settings.secret_key, settings.data_dir))
        await upgrade(db)
        await reseal_clear_values(db)
        if settings.demo:
            created = await ensure_demo_tenant(db, settings.data_dir)
            app.state.demo = created
            if created is not None:
                log.warning("demo tenant created; admin key written to %s", settings.data_dir / "demo-admin-key.txt")
                if settings.demo_knowledge:
                    kb_id = await load_demo_kb(db, knowledge, created.tenant.id)
                    log.warning("demo knowledge base %s loaded", kb_id)
        await bus.start()
        await chat.bridge.start()
        await gateway.presence.start()
        background.append(asyncio.create_task(bot_runner.run(), name="parley-bot-runner"))
        background.append(asyncio.create_task(ingest_worker.run(), name="parley-ingest"))
        background.append(asyncio.create_task(app.state.passwords.warm(), name="parley-password-warm"))
        push.start()
        # Everything loaded so far lives as long as the process: keep the collector off it, or a
        # full collection over the AI and knowledge stack pauses every socket for a few 100 ms.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await bot_runner.stop()
            await push.stop()
            await _shutdown(gateway, background, bus, db)
            await limiter.close()

    @websocket("/v1/ws")
    async def ws_endpoint(socket: WebSocket[Any, Any, Any]) -> None:
        await gateway.handle(socket)

    handlers: list[Any] = [ws_endpoint, *health_handlers, *auth_handlers, *people_handlers, *conversation_handlers,
                           *knowledge_handlers, *bot_handlers, *push_route_handlers, *web_handlers, *stats_handlers]
    return Litestar(
        route_handlers=handlers,
        state=state,
        lifespan=[lifespan],
        dependencies={
            "principal": Provide(get_principal),
            "db": Provide(lambda: db, sync_to_thread=False),
            "push_engine": Provide(lambda: push.engine, sync_to_thread=False),
        },
        exception_handlers={ParleyError: _parley_error, HTTPException: _http_error, RecursionError: _too_deep,
                            Exception: _internal_error},
        # The JSON schema only: Litestar's documentation UIs load their scripts from CDNs.
        openapi_config=OpenAPIConfig(title="Parley", version="1.0.0", path="/schema",
                                     render_plugins=[JsonRenderPlugin()]),
        before_request=require_declared_body_type,
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


async def _shutdown(gateway: Gateway, background: list[asyncio.Task[Any]], bus: Bus, db: Database) -> None:
    try:
        await gateway.drain()
        await gateway.presence.stop()
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(BaseException):
                await task
        await bus.stop()
        await db.dispose()
    except Exception:
        log.exception("shutdown failed")
        raise


def _build_llm(settings: Settings) -> Any:
    """An OpenAI-compatible chat model when one is configured; None selects extractive mode."""
    if not settings.llm_base_url:
        return None
    from bots.config import LLMConfig
    from bots.llm import build_chat_model

    return build_chat_model(LLMConfig(base_url=settings.llm_base_url, api_key=settings.llm_api_key or "none",
                                      model=settings.llm_model, timeout_s=settings.llm_timeout_s,
                                      max_retries=settings.llm_max_retries,
                                      max_tokens=settings.llm_max_tokens))


def _parley_error(_req: Request[Any, Any, Any], exc: ParleyError) -> Response[Any]:
    status = status_for_code(exc.code)
    headers = {}
    if exc.retry_after_ms is not None:
        headers["Retry-After"] = str(max(1, -(-exc.retry_after_ms // 1000)))  # whole seconds, rounded up
    return Response(error_body(exc.code, exc.detail, field=exc.field, retry_after_ms=exc.retry_after_ms),
                    status_code=status, headers=headers)


def _http_error(_req: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    detail = str(exc.detail)
    if isinstance(exc, ValidationException):
        extra = exc.extra if isinstance(exc.extra, list) else []
        field = None
        if extra and isinstance(extra[0], dict):
            field = str(extra[0].get("key") or "") or None
            detail = f"{detail}: {extra[0].get('message', '')}".strip(": ")
        if "malformed" in detail.lower() or "decode" in detail.lower():
            return Response(error_body("bad_frame", detail), status_code=400)
        return Response(error_body("validation_failed", detail, field=field), status_code=422)
    # A body that does not parse at all is a malformed frame (400); a parsed one that fails
    # validation is answered above with validation_failed (422).
    code = {400: "bad_frame", 401: "auth_required", 403: "forbidden", 404: "not_found", 405: "not_found",
            413: "too_long",
            415: "unsupported_media_type", 429: "rate_limited", 503: "unavailable"}.get(status)
    if isinstance(exc, NotAuthorizedException):
        code = "auth_required"
    if code is None:
        code = "validation_failed" if 400 <= status < 500 else "internal"
    return Response(error_body(code, detail), status_code=status)


def _too_deep(_req: Request[Any, Any, Any], _exc: RecursionError) -> Response[Any]:
    # The JSON decoder recurses once per nesting level: a body nested thousands deep is bad input.
    return Response(error_body("bad_frame", "JSON nested too deep"), status_code=400)


def _internal_error(_req: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error", exc_info=exc)
    return Response(error_body("internal", "internal error"), status_code=500)

