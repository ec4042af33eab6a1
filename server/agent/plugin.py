"""The AI agent as Litestar plugins: the knowledge stack, the chat model, the bot runner and the
ingestion worker (each an outbox consumer), the retrieval readiness probe, and the demo tenant
with its knowledge base."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.plugins import InitPluginProtocol

from server.accounts.tenants import CreatedTenant, ensure_demo_tenant
from server.agent.knowledge import IngestWorker, KnowledgeRetriever, build_knowledge, load_demo_kb
from server.agent.runner import BotRunner
from server.chat.service import ChatService
from server.core.db import Database
from server.core.metrics import Metrics
from server.core.outbox import RetryPolicy
from server.core.plugin import Background, ReadinessProbes, provide
from server.core.settings import Settings
from server.handoff.router import Router

__all__ = ["AgentPlugin", "DemoPlugin", "build_llm"]

log = logging.getLogger("parley")


def build_llm(settings: Settings) -> Any:
    """An OpenAI-compatible chat model when one is configured; None selects extractive mode."""
    if not settings.llm_base_url:
        return None
    from bots.config import LLMConfig
    from bots.llm import build_chat_model

    return build_chat_model(LLMConfig(base_url=settings.llm_base_url, api_key=settings.llm_api_key or "none",
                                      model=settings.llm_model, timeout_s=settings.llm_timeout_s,
                                      max_retries=settings.llm_max_retries,
                                      max_tokens=settings.llm_max_tokens))


class AgentPlugin(InitPluginProtocol):
    def __init__(self, settings: Settings, db: Database, chat: ChatService, router: Router, metrics: Metrics,
                 background: Background, probes: ReadinessProbes) -> None:
        self.background = background
        self.knowledge = build_knowledge(settings)
        self.retriever = KnowledgeRetriever(self.knowledge)
        self.llm = build_llm(settings)
        self.bot_runner = BotRunner(
            db, chat, router, self.retriever, model=self.llm, metrics=metrics,
            answer_deadline_s=settings.answer_deadline_s,
            policy=RetryPolicy(max_attempts=settings.bot_outbox_max_attempts,
                               backoff_base_s=settings.bot_outbox_backoff_base_s,
                               backoff_max_s=settings.bot_outbox_backoff_max_s),
            poll_s=settings.outbox_poll_s, lease_s=settings.bot_outbox_lease_s, batch=settings.bot_outbox_batch,
            concurrency=settings.bot_outbox_concurrency, canary_refresh_s=settings.canary_refresh_s,
            foreign_canaries_max=settings.foreign_canaries_max, history_turns=settings.bot_history_turns)
        self.ingest_worker = IngestWorker(db, settings, self.knowledge)
        probes["retrieval"] = self.retrieval_ready

    async def retrieval_ready(self) -> bool:
        # A real retrieval: the embedder and the vector store both answer.
        await asyncio.to_thread(self.knowledge.embedder.embed, ["ready?"])
        await asyncio.to_thread(self.knowledge.list_kbs)
        return True

    @asynccontextmanager
    async def _lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        self.background.add(self.bot_runner.start())
        self.background.spawn(self.ingest_worker.run(), name="parley-ingest")
        try:
            yield
        finally:
            await self.bot_runner.stop()

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        services = {"knowledge": self.knowledge, "retriever": self.retriever, "llm": self.llm,
                    "bot_runner": self.bot_runner, "ingest_worker": self.ingest_worker}
        app_config.state.update(services)
        app_config.dependencies.update({name: provide(v) for name, v in services.items()})
        app_config.lifespan.append(self._lifespan)
        return app_config


class DemoPlugin(InitPluginProtocol):
    """``PARLEY_DEMO``: a demo tenant (and its knowledge base) on the first start."""

    def __init__(self, settings: Settings, db: Database, agent: AgentPlugin) -> None:
        self.settings = settings
        self.db = db
        self.agent = agent
        self.created: CreatedTenant | None = None

    @asynccontextmanager
    async def _lifespan(self, app: Litestar) -> AsyncIterator[None]:
        settings = self.settings
        if settings.demo:
            self.created = created = await ensure_demo_tenant(
                self.db, settings.data_dir, hash_password=app.state.passwords.hash,
                min_password_length=settings.min_password_length)
            app.state.demo = created
            if created is not None:
                log.warning("demo tenant created; admin key written to %s", settings.data_dir / "demo-admin-key.txt")
                if settings.demo_knowledge:
                    kb_id = await load_demo_kb(self.db, self.agent.knowledge, created.tenant.id)
                    log.warning("demo knowledge base %s loaded", kb_id)
        yield

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.state["demo"] = None
        app_config.dependencies["demo"] = Provide(lambda: self.created, sync_to_thread=False)
        app_config.lifespan.append(self._lifespan)
        return app_config
