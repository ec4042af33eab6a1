"""The one place that fills the event path: which handler hears which event, in which order.
Called by the composition root (``server.app``); nothing else subscribes.

Before, seven hook points did this job (``chat.listeners``, ``chat.on_bot_work``,
``router.on_status``, ``router.summarize``, ``router.on_handoff``, ``gateway.on_handoff_request``,
``bus.on_recovered``), filled from three files, some by attribute assignment."""

from server.agent.runner import BotRunner
from server.chat.events import BotWork, ConversationEvent
from server.chat.lifecycle import Action
from server.core.events import BusRecovered, Dispatcher, PresenceChanged
from server.core.metrics import Metrics
from server.handoff.router import Router
from server.realtime.gateway import Gateway

__all__ = ["wire_events"]


def wire_events(events: Dispatcher, *, gateway: Gateway, router: Router, bot_runner: BotRunner,
                metrics: Metrics) -> None:
    async def count_handoff(event: ConversationEvent) -> None:
        if event.action is Action.HANDOFF:
            metrics.handoff(event.tenant_id, event.reason or "requested")

    async def catch_up(_event: BusRecovered) -> None:
        await gateway.catch_up()

    # Every node: its own sockets follow, its own bot streams stop.
    events.subscribe(ConversationEvent, gateway.on_conversation_event, everywhere=True)
    events.subscribe(ConversationEvent, bot_runner.on_conversation_event, everywhere=True)
    # The node of the write: count it, summarise a handoff for the agents, and only then offer
    # the queue (so the agent who gets it finds the summary there).
    events.subscribe(ConversationEvent, count_handoff)
    events.subscribe(ConversationEvent, bot_runner.post_summary)
    events.subscribe(ConversationEvent, router.on_conversation_event)
    events.subscribe(BotWork, bot_runner.on_bot_work)
    events.subscribe(PresenceChanged, router.on_presence)
    events.subscribe(BusRecovered, catch_up)
