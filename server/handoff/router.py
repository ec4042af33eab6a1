"""Handoff and routing: moving a conversation between the AI agent, the queue and human
agents. The choice of agent is a pure function; the rest goes through the chat service."""

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import col, select

from server.accounts.auth import Principal
from server.chat.events import ConversationEvent
from server.chat.lifecycle import Action, Actor, ActorKind, Status, TransitionRefused
from server.chat.service import ChatService, actor_of
from server.core.events import PresenceChanged
from server.core.models import Agent, Conversation, Message, User
from server.core.settings import default
from server.desk.routing import list_rules, match_rule, set_team, team_members, teams_of
from server.errors import BadInput, Forbidden

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


class Router:
    """Moves conversations between the AI agent, the queue and human agents. Transitions go
    through the chat service; what follows them (offering waiting conversations, telling the
    queue its new places) runs in :meth:`on_conversation_event`, on the node of the write."""

    def __init__(self, chat: ChatService, online_agents: Callable[[str], set[str]], *,
                 assign_batch: int = default("queue_assign_batch"),
                 publish_max: int = default("queue_publish_max"),
                 topic_messages: int = default("routing_topic_messages")) -> None:
        self.chat = chat
        self.topic_messages = topic_messages
        self.assign_batch = assign_batch
        self.publish_max = publish_max
        self.db = chat.db
        self.online_agents = online_agents

    async def handoff(self, tenant_id: str, conversation_id: str, *, reason: str,
                      notice: str | None = None) -> Conversation:
        actor = Actor(ActorKind.SYSTEM, "router")
        await self.chat.apply(tenant_id, conversation_id, Action.HANDOFF, actor, reason=reason, notice=notice)
        return await self._get(tenant_id, conversation_id)

    async def agent_action(self, p: Principal, conversation_id: str, action: str) -> Conversation:
        if p.role != "agent":
            raise Forbidden("only agents can do this")
        try:
            what = Action(action)
        except ValueError:
            raise BadInput(f"unknown action {action!r}") from None
        await self._get(p.tenant_id, conversation_id)
        return await self.chat.apply(p.tenant_id, conversation_id, what, actor_of(p), principal=p)

    async def on_conversation_event(self, event: ConversationEvent) -> None:
        if event.action is Action.HANDOFF and event.status is Status.QUEUED:
            await self.route_by_rules(event.tenant_id, event.conversation_id, event.user_id, event.reason)
        if event.republish_queue:
            await self.publish_queue(event.tenant_id)
        if event.offer_waiting:
            await self.assign_waiting(event.tenant_id)

    async def route_by_rules(self, tenant_id: str, conversation_id: str, user_id: str,
                             reason: str | None) -> str | None:
        """A handed-off conversation goes to the team of the tenant's first rule that fits (the
        user's recent messages and the handoff reason for a topic, the user's attributes), else to
        the whole tenant. Answers the team's id."""
        rules = await list_rules(self.db, tenant_id)
        team_id: str | None = None
        if rules:
            async with self.db.session() as s:
                texts = list((await s.exec(select(Message.text).where(
                    Message.conversation_id == conversation_id, Message.tenant_id == tenant_id,
                    Message.sender_kind == "user", Message.kind == "text")
                    .order_by(col(Message.seq).desc()).limit(self.topic_messages))).all())
                user = (await s.exec(select(User).where(User.tenant_id == tenant_id,
                                                        User.external_id == user_id))).first()
            rule = match_rule(rules, texts=[*texts, (reason or "").replace("_", " ")],
                              attributes=user.attributes if user is not None else {})
            team_id = rule.team_id if rule is not None else None
        if team_id is not None or await teams_of(self.db, tenant_id, [conversation_id]):
            await set_team(self.db, tenant_id, conversation_id, team_id)  # a former team's route is cleared
        return team_id

    async def on_presence(self, event: PresenceChanged) -> None:
        """An agent who comes online is offered what waits in the queue."""
        if event.online and event.role == "agent":
            await self.assign_waiting(event.tenant_id)

    async def assign_waiting(self, tenant_id: str) -> None:
        """Give queued conversations, oldest first, to online agents with free capacity."""
        online = self.online_agents(tenant_id)
        if not online:
            return
        async with self.db.session() as s:
            waiting = list((await s.exec(
                select(Conversation).where(Conversation.tenant_id == tenant_id, Conversation.status == Status.QUEUED)
                .order_by(col(Conversation.queued_at)).limit(self.assign_batch))).all())
            if not waiting:
                return
            # a deactivated agent's open socket gets nothing new; capacity is read fresh each time
            agents = list((await s.exec(select(Agent).where(Agent.tenant_id == tenant_id, col(Agent.active),
                                                            col(Agent.id).in_(online)))).all())
            counts = dict((await s.exec(
                select(Conversation.assignee_id, func.count()).where(
                    Conversation.tenant_id == tenant_id, Conversation.status == Status.ASSIGNED)
                .group_by(Conversation.assignee_id))).all())
        loads = {a.id: AgentLoad(a.id, int(counts.get(a.id, 0)), a.max_concurrent) for a in agents}
        # a conversation routed to a team goes to its members only (while the team has any)
        routed = await teams_of(self.db, tenant_id, [c.id for c in waiting])
        members = await team_members(self.db, tenant_id, sorted(set(routed.values())))
        for conv in waiting:
            team = members.get(routed.get(conv.id, ""))
            if all(x.free <= 0 for x in loads.values()):
                return
            pool = [x for x in loads.values() if x.agent_id in team] if team else list(loads.values())
            if conv.handoff_reason == "transfer":  # not back to the agent who transferred it
                pool = [x for x in pool if x.agent_id != conv.last_agent_id]
            agent_id = choose_agent(pool)
            if agent_id is None:
                continue
            agent = next(a for a in agents if a.id == agent_id)
            p = Principal(tenant_id=tenant_id, role="agent", id=agent_id, name=agent.name)
            try:
                await self.agent_action(p, conv.id, "claim")
            except TransitionRefused:
                continue
            cur = loads[agent_id]
            loads[agent_id] = AgentLoad(agent_id, cur.active + 1, cur.max_concurrent)

    async def publish_queue(self, tenant_id: str) -> None:
        """Tell every waiting user their new place in the queue and the estimated wait."""
        async with self.db.session() as s:
            waiting = list((await s.exec(
                select(Conversation).where(Conversation.tenant_id == tenant_id, Conversation.status == Status.QUEUED)
                .order_by(col(Conversation.queued_at)).limit(self.publish_max))).all())
        for position, conv in enumerate(waiting, start=1):
            await self.chat.publish_conversation(conv, queue_position=position)

    async def _get(self, tenant_id: str, conversation_id: str) -> Conversation:
        p = Principal(tenant_id=tenant_id, role="admin", id="router")
        return await self.chat.get_conversation(p, conversation_id)
