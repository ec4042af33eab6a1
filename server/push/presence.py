"""Who is online, and the in-app channel: the port the push engine needs. The server implements
it over the cluster-wide presence of its gateway (``server.push.wiring.GatewayPresence``);
``MemoryPresence`` is the real in-process adapter used by tests and the bench."""

from collections import defaultdict
from typing import Any, Protocol, runtime_checkable

__all__ = ["MemoryPresence", "Presence"]


@runtime_checkable
class Presence(Protocol):
    def is_online(self, tenant_id: str, user_id: str) -> bool: ...

    async def deliver(self, tenant_id: str, user_id: str, frame: dict[str, Any]) -> bool:
        """Send a ``notification`` frame to every connection of the user; False if none took it."""
        ...


class MemoryPresence:
    def __init__(self) -> None:
        self.online: set[tuple[str, str]] = set()
        self.frames: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)

    def connect(self, tenant_id: str, user_id: str) -> None:
        self.online.add((tenant_id, user_id))

    def is_online(self, tenant_id: str, user_id: str) -> bool:
        return (tenant_id, user_id) in self.online

    async def deliver(self, tenant_id: str, user_id: str, frame: dict[str, Any]) -> bool:
        if (tenant_id, user_id) not in self.online:
            return False
        self.frames[(tenant_id, user_id)].append(frame)
        return True
