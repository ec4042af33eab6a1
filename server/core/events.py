"""The one event path inside a node: typed events published after commit, handled by what the
composition root subscribed. Nothing else registers a callback on a service.

A handler subscribed ``everywhere`` also runs for events that another node published (they
arrive over the bus, see ``server.chat.events``); the others run on the node that did the write."""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["BusRecovered", "Dispatcher", "Handler", "PresenceChanged"]

log = logging.getLogger("parley.events")

E = TypeVar("E")
Handler = Callable[[E], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class BusRecovered:
    """The bus lost messages (Redis down) and is back: sockets catch up from the database."""


class Dispatcher:
    def __init__(self) -> None:
        self._handlers: dict[type, list[tuple[Callable[[Any], Awaitable[None]], bool]]] = {}

    def subscribe(self, kind: type[E], handler: Handler[E], *, everywhere: bool = False) -> None:
        self._handlers.setdefault(kind, []).append((handler, everywhere))

    async def publish(self, event: object, *, remote: bool = False) -> None:
        """Run every handler of the event's type, in the order they were subscribed. A failing
        handler is logged and the next one still runs: the write it follows has committed."""
        for handler, everywhere in self._handlers.get(type(event), ()):
            if remote and not everywhere:
                continue
            try:
                await handler(event)
            except Exception:  # broad on purpose: a handler's failure must not undo a committed write
                log.exception("handler %s failed on %s", getattr(handler, "__qualname__", handler), event)


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    """A principal's first socket in the cluster opened (``online``) or its last one closed."""

    tenant_id: str
    role: str
    principal_id: str
    online: bool
