"""Transfer: an agent (the owner, or anyone while nobody owns it) or an admin hands a conversation
to another agent or to a team, with a comment the agents read in its history. The target must be
an active agent, or a team, of the same tenant (else ``not_found``, like a missing one); an agent
with no free capacity is refused (``at_capacity``). A team's conversation goes to its online member
with the most free capacity, or waits in the queue for the team's next free member."""

from sqlmodel import col, select

from server.accounts.auth import Principal
from server.accounts.teams import get_team
from server.chat.lifecycle import Action, Actor, ActorKind, Status
from server.chat.service import actor_of
from server.core.models import Agent, Conversation
from server.desk.routing import assigned_counts, set_team, team_members
from server.errors import BadInput, Conflict, Forbidden, NotFound
from server.handoff.router import AgentLoad, Router, choose_agent

__all__ = ["transfer"]


async def _loads(router: Router, tenant_id: str, agents: list[Agent]) -> list[AgentLoad]:
    counts = await assigned_counts(router.db, tenant_id, [a.id for a in agents])
    return [AgentLoad(a.id, counts.get(a.id, 0), a.max_concurrent) for a in agents]


async def _active_agent(router: Router, tenant_id: str, agent_id: str) -> Agent:
    async with router.db.session() as s:
        agent = await s.get(Agent, agent_id)
    if agent is None or agent.tenant_id != tenant_id or not agent.active:
        raise NotFound("agent not found")
    return agent


async def transfer(router: Router, p: Principal, conversation_id: str, *, agent_id: str | None = None,
                   team_id: str | None = None, comment: str | None = None) -> Conversation:
    if p.role not in ("agent", "admin"):
        raise Forbidden("transfers are for agents and admins")
    if (agent_id is None) == (team_id is None):
        raise BadInput("give either agent_id or team_id", field="agent_id")
    comment = (comment or "").strip() or None
    conv = await router.chat.get_conversation(p, conversation_id)
    actor = actor_of(p)
    if agent_id is not None:
        agent = await _active_agent(router, p.tenant_id, agent_id)
        if agent.id == p.id:
            raise BadInput("a conversation is not transferred to yourself; claim it", field="agent_id")
        load = (await _loads(router, p.tenant_id, [agent]))[0]
        if load.free <= 0 and not (conv.status == Status.ASSIGNED and conv.assignee_id == agent.id):
            raise Conflict(f"{agent.name} has no free capacity ({load.active} of {load.max_concurrent})",
                           code="at_capacity", field="agent_id")
        await set_team(router.db, p.tenant_id, conv.id, None)
        return await router.chat.apply(p.tenant_id, conv.id, Action.TRANSFER, actor, principal=p,
                                       target=Actor(ActorKind.AGENT, agent.id, agent.name), comment=comment)
    assert team_id is not None
    team = await get_team(router.db, p.tenant_id, team_id)
    members = (await team_members(router.db, p.tenant_id, [team.id]))[team.id]
    if not members:
        raise Conflict(f"the team {team.name} has no active agent", code="at_capacity", field="team_id")
    online = router.online_agents(p.tenant_id) & (members - {p.id})
    async with router.db.session() as s:
        candidates = [a for a in (await s.exec(select(Agent).where(
            Agent.tenant_id == p.tenant_id, col(Agent.id).in_(online)))).all()
            if a.active] if online else []
    chosen = choose_agent(await _loads(router, p.tenant_id, candidates)) if candidates else None
    await set_team(router.db, p.tenant_id, conv.id, team.id)
    target = next((Actor(ActorKind.AGENT, a.id, a.name) for a in candidates if a.id == chosen), None)
    if target is not None and comment is not None:
        comment = f"{comment} (team {team.name})"
    elif target is not None:
        comment = f"team {team.name}"
    else:
        comment = f"team {team.name}" + (f": {comment}" if comment else "")
    return await router.chat.apply(p.tenant_id, conv.id, Action.TRANSFER, actor, principal=p, target=target,
                                   comment=comment)
