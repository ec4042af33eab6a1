"""Handoff and routing: moving a conversation between the AI agent, the queue and human
agents. The choice of agent is a pure function; the rest goes through the chat service."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from server.accounts.auth import Principal
from server.chat.service import ChatService, Sender
from server.core.models import Agent, Conversation
from server.errors import Conflict, Forbidden

__all__ = ["AgentLoad", "Router", "choose_agent"]


@dataclass(frozen=True, slots=True)
class AgentLoad:
    agent_id: str
    active: int
    max_concurrent: int

    @property
    def free(self) -> int:
        return self.max_concurrent - self.active


def choose_agent(loads: list[AgentLoad]) -> str | None:
    """The online agent with the most free capacity; ties go to the lowest id for determinism."""
    candidates = [a for a in loads if a.free > 0]
    if not candidates:
        return None
    return min(candidates, key=lambda a: (-a.free, a.active, a.agent_id)).agent_id


SummaryFn = Callable[[str, str], Awaitable[str | None]]


class Router:
    def __init__(self, chat: ChatService, online_agents: Callable[[str], set[str]],
                 on_handoff: Callable[[str], None] | None = None) -> None:
        self.chat = chat
        self.on_handoff = on_handoff
        self.db = chat.db
        self.online_agents = online_agents
        self.summarize: SummaryFn | None = None
        self.on_status: list[Callable[[str, Conversation], Awaitable[Any]]] = []

    async def handoff(self, tenant_id: str, conversation_id: str, *, reason: str,
                      notice: str | None = None) -> Conversation:
        before = await self._get(tenant_id, conversation_id)
        if before.status in ("queued", "assigned"):
            return before
        conv = await self.chat.set_status(None, tenant_id, conversation_id, "handoff", reason=reason)
        if self.on_handoff is not None:
            self.on_handoff(reason)
        if notice:
            await self.chat.send(tenant_id, conversation_id, Sender("system", "system", "Parley"), notice,
                                 kind="system")
        if self.summarize is not None:
            summary = await self.summarize(tenant_id, conversation_id)
            if summary:
                await self.chat.send(tenant_id, conversation_id, Sender("system", "system", "Handoff summary"),
                                     summary, kind="note")
        await self._notify(f"handoff:{reason}", conv)
        await self.assign_waiting(tenant_id)
        return await self._get(tenant_id, conversation_id)

    async def agent_action(self, p: Principal, conversation_id: str, action: str) -> Conversation:
        if p.role != "agent":
            raise Forbidden("only agents can do this")
        conv = await self._get(p.tenant_id, conversation_id)
        if action in ("resolve", "handback") and conv.status == "assigned" and conv.assignee_id != p.id:
            raise Conflict("another agent owns this conversation", code="forbidden")
        conv = await self.chat.set_status(p, p.tenant_id, conversation_id, action, agent_id=p.id)
        if action == "claim":
            await self.chat.send(p.tenant_id, conversation_id, Sender("system", "system", "Parley"),
                                 f"{p.name or 'An agent'} joined the conversation", kind="system")
        elif action == "handback":
            await self.chat.send(p.tenant_id, conversation_id, Sender("system", "system", "Parley"),
                                 "The assistant is back in the conversation", kind="system")
        await self._notify(action, conv)
        if action in ("resolve", "handback"):
            await self.assign_waiting(p.tenant_id)
        if action == "claim":
            await self.publish_queue(p.tenant_id)
        return conv

    async def assign_waiting(self, tenant_id: str) -> None:
        """Give queued conversations, oldest first, to online agents with free capacity."""
        online = self.online_agents(tenant_id)
        if not online:
            return
        async with self.db.session() as s:
            waiting = list((await s.exec(
                select(Conversation).where(Conversation.tenant_id == tenant_id, Conversation.status == "queued")
                .order_by(col(Conversation.queued_at)).limit(50))).all())
            if not waiting:
                return
            # a deactivated agent's open socket gets nothing new; capacity is read fresh each time
            agents = list((await s.exec(select(Agent).where(Agent.tenant_id == tenant_id, col(Agent.active),
                                                            col(Agent.id).in_(online)))).all())
            counts = dict((await s.exec(
                select(Conversation.assignee_id, func.count()).where(
                    Conversation.tenant_id == tenant_id, Conversation.status == "assigned")
                .group_by(Conversation.assignee_id))).all())
        loads = {a.id: AgentLoad(a.id, int(counts.get(a.id, 0)), a.max_concurrent) for a in agents}
        for conv in waiting:
            agent_id = choose_agent(list(loads.values()))
            if agent_id is None:
                return
            agent = next(a for a in agents if a.id == agent_id)
            p = Principal(tenant_id=tenant_id, role="agent", id=agent_id, name=agent.name)
            try:
                await self.agent_action(p, conv.id, "claim")
            except Conflict:
                continue
            cur = loads[agent_id]
            loads[agent_id] = AgentLoad(agent_id, cur.active + 1, cur.max_concurrent)

    async def publish_queue(self, tenant_id: str) -> None:
        """Tell every waiting user their new place in the queue and the estimated wait."""
        async with self.db.session() as s:
            waiting = list((await s.exec(
                select(Conversation).where(Conversation.tenant_id == tenant_id, Conversation.status == "queued")
                .order_by(col(Conversation.queued_at)).limit(500))).all())
        for position, conv in enumerate(waiting, start=1):
            await self.chat.publish_conversation(conv, queue_position=position)

    async def _get(self, tenant_id: str, conversation_id: str) -> Conversation:
        p = Principal(tenant_id=tenant_id, role="admin", id="router")
        return await self.chat.get_conversation(p, conversation_id)

    async def _notify(self, what: str, conv: Conversation) -> None:
        for fn in self.on_status:
            await fn(what, conv)

