"""Conversation events: what happened to a conversation, published after its commit through
the node's one :class:`~server.core.events.Dispatcher` and carried on the bus, so that every
node updates its own sockets (a ``follow`` reaches an agent connected to any node).

Handlers are subscribed by the composition root only (``server.event_wiring``)."""

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from server.chat.lifecycle import Action, Follow, Status
from server.core.events import Dispatcher
from server.core.wire import TOPIC_EVENTS
from server.fanout import Bus

__all__ = ["BotWork", "ConversationEvent", "EventBridge"]

log = logging.getLogger("parley.events")


@dataclass(frozen=True, slots=True)
class ConversationEvent:
    """A conversation changed status (a transition that changed something has committed)."""

    tenant_id: str
    conversation_id: str
    user_id: str
    action: Action
    actor_id: str
    before: Status
    status: Status
    assignee_id: str | None
    reason: str | None = None
    follow: tuple[Follow, ...] = ()
    republish_queue: bool = False
    offer_waiting: bool = False
    summarize: bool = False
    stop_bot: bool = False

    def to_json(self, node: str) -> str:
        body: dict[str, Any] = {
            "node": node, "tenant_id": self.tenant_id, "conversation_id": self.conversation_id,
            "user_id": self.user_id, "action": str(self.action), "actor_id": self.actor_id,
            "before": str(self.before), "status": str(self.status), "assignee_id": self.assignee_id,
            "reason": self.reason, "follow": [[f.role, f.principal_id] for f in self.follow],
            "republish_queue": self.republish_queue, "offer_waiting": self.offer_waiting,
            "summarize": self.summarize, "stop_bot": self.stop_bot,
        }
        return json.dumps(body)

    @classmethod
    def from_json(cls, data: str) -> tuple[str, "ConversationEvent"]:
        """``(origin node, event)``; raises ValueError/KeyError on a malformed body."""
        d = json.loads(data)
        return str(d["node"]), cls(
            tenant_id=d["tenant_id"], conversation_id=d["conversation_id"], user_id=d["user_id"],
            action=Action(d["action"]), actor_id=d["actor_id"], before=Status(d["before"]),
            status=Status(d["status"]), assignee_id=d["assignee_id"], reason=d["reason"],
            follow=tuple(Follow(str(r), str(p)) for r, p in d["follow"]),
            republish_queue=bool(d["republish_queue"]), offer_waiting=bool(d["offer_waiting"]),
            summarize=bool(d["summarize"]), stop_bot=bool(d["stop_bot"]))


@dataclass(frozen=True, slots=True)
class BotWork:
    """A committed user message left work for the AI agent (its outbox row is written)."""

    tenant_id: str
    conversation_id: str


class EventBridge:
    """Publishes conversation events to this node's dispatcher and to the other nodes over the
    bus; events heard from another node run the handlers subscribed ``everywhere``."""

    def __init__(self, bus: Bus, dispatcher: Dispatcher, node_id: str | None = None) -> None:
        self.bus = bus
        self.dispatcher = dispatcher
        self.node_id = node_id or uuid.uuid4().hex

    async def start(self) -> None:
        await self.bus.listen(TOPIC_EVENTS, self._heard)

    async def announce(self, event: ConversationEvent) -> None:
        await self.dispatcher.publish(event)
        await self.bus.publish(TOPIC_EVENTS, event.to_json(self.node_id))

    async def _heard(self, data: str) -> None:
        try:
            node, event = ConversationEvent.from_json(data)
        except (ValueError, KeyError, TypeError):
            log.warning("malformed conversation event on the bus")
            return
        if node != self.node_id:
            await self.dispatcher.publish(event, remote=True)
