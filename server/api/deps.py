"""Dependencies of the REST handlers: the authenticated principal, role checks, and the
services the plugins provide, each injected by the parameter's name (``db: DbDep``)."""

from typing import Any

from langchain_core.language_models import BaseChatModel
from litestar import Request
from litestar.di import NamedDependency

from bots.ports import Retriever
from knowledge.service import KnowledgeService
from server.accounts.auth import Principal, authenticate_bearer, token_limits
from server.accounts.login_guard import LoginGuard
from server.accounts.passwords import PasswordHashing
from server.agent.knowledge import IngestWorker
from server.chat.service import ChatService
from server.core.db import Database
from server.core.metrics import Metrics
from server.core.plugin import ReadinessProbes
from server.core.ratelimit import Limiter
from server.core.settings import Settings
from server.errors import Forbidden
from server.fanout.bus import Bus
from server.handoff.router import Router
from server.realtime.gateway import Gateway

__all__ = ["Auth", "BusDep", "ChatDep", "DbDep", "GatewayDep", "IngestDep", "KnowledgeDep", "LimiterDep", "LlmDep",
           "LoginGuardDep", "MetricsDep", "PasswordsDep", "ProbesDep", "RetrieverDep", "RouterDep", "SettingsDep",
           "get_principal", "require"]

#: The authenticated caller, injected by name into every handler that declares it.
Auth = NamedDependency[Principal]
BusDep = NamedDependency[Bus]
ChatDep = NamedDependency[ChatService]
DbDep = NamedDependency[Database]
GatewayDep = NamedDependency[Gateway]
IngestDep = NamedDependency[IngestWorker]
KnowledgeDep = NamedDependency[KnowledgeService]
LimiterDep = NamedDependency[Limiter]
#: The configured chat model, or None (extractive mode).
LlmDep = NamedDependency[BaseChatModel | None]
LoginGuardDep = NamedDependency[LoginGuard]
MetricsDep = NamedDependency[Metrics]
PasswordsDep = NamedDependency[PasswordHashing]
ProbesDep = NamedDependency[ReadinessProbes]
RetrieverDep = NamedDependency[Retriever]
RouterDep = NamedDependency[Router]
SettingsDep = NamedDependency[Settings]


async def get_principal(request: Request[Any, Any, Any], db: DbDep, settings: SettingsDep) -> Principal:
    return await authenticate_bearer(db, request.headers.get("authorization"), token_limits(settings))


def require(p: Principal, *roles: str) -> Principal:
    if p.role not in roles:
        raise Forbidden(f"this endpoint is for {', '.join(roles)}")
    return p
