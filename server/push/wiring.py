"""Building the push engine for the app: providers on shared HTTP clients, presence over the
WebSocket gateway, chat events into the behaviour stream, and the worker's lifecycle."""

from typing import Any

import httpx

from knowledge.fetch import Resolver, system_resolver
from server.core.db import Database
from server.core.settings import PushSettings
from server.push.egress import EgressPolicy, GuardedTransport
from server.push.engine import PushEngine
from server.push.providers import ApnsProvider, FcmProvider, Provider, WebhookProvider, WebPushProvider
from server.push.worker import PushWorker

__all__ = ["GatewayPresence", "PushRuntime"]


class GatewayPresence:
    """``Presence`` over the gateway's cluster-wide view (``server.realtime.presence``): a user
    connected to any node is online, and the in-app frame reaches them on whichever node."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway

    def is_online(self, tenant_id: str, user_id: str) -> bool:
        return bool(self.gateway.is_online(tenant_id, "user", user_id))

    async def deliver(self, tenant_id: str, user_id: str, frame: dict[str, Any]) -> bool:
        return bool(await self.gateway.deliver_to(tenant_id, "user", user_id, frame))


class PushRuntime:
    def __init__(self, db: Database, gateway: Any, settings: PushSettings | None = None,
                 resolver: Resolver = system_resolver) -> None:
        self.settings = settings or PushSettings()
        self.egress = EgressPolicy.from_settings(self.settings, resolver)
        timeout = httpx.Timeout(self.settings.provider_timeout_s)
        limits = httpx.Limits(max_connections=self.settings.egress_max_connections,
                              max_keepalive_connections=self.settings.egress_max_keepalive)
        # every connection is checked and pinned by the egress policy; redirects are never followed
        self.client = httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False,
                                        transport=GuardedTransport(self.egress, limits=limits))
        self.h2_client = httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False,
                                           transport=GuardedTransport(self.egress, http2=True, limits=limits))
        providers: dict[str, Provider] = {
            "webpush": WebPushProvider(self.client, self.settings, egress=self.egress),
            "fcm": FcmProvider(self.client, self.settings, egress=self.egress),
            "apns": ApnsProvider(self.h2_client, self.settings),
            "webhook": WebhookProvider(self.client, self.settings, egress=self.egress),
        }
        self.engine = PushEngine(db, providers, GatewayPresence(gateway), settings=self.settings, egress=self.egress)
        self.worker = PushWorker(self.engine)

    def start(self) -> None:
        self.worker.start()

    async def stop(self) -> None:
        await self.worker.stop()
        self.engine.renderer.close()
        await self.client.aclose()
        await self.h2_client.aclose()
