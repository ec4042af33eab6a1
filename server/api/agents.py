"""Human agents as the admin pages see them (admin only): the list with presence, open
conversations and teams, and editing the name and capacity. Creating an agent, resetting its
password and (de)activating it are in ``server.api.people``."""

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import get, patch
from litestar.params import FromPath, FromQuery, JSONBody
from sqlalchemy import func
from sqlmodel import col, select

from server.accounts.teams import teams_by_agent
from server.api.deps import Auth, DbDep, GatewayDep, RouterDep, require
from server.core.db import Database
from server.core.models import Agent, Conversation
from server.errors import BadInput, NotFound
from server.realtime.gateway import Gateway

__all__ = ["AgentOut", "agent_handlers"]


class AgentOut(msgspec.Struct):
    id: str
    name: str
    email: str
    active: bool
    max_concurrent: int
    #: has a live socket on this server node
    online: bool
    #: conversations assigned to the agent now
    open_conversations: int
    team_ids: list[str]
    created_at: datetime


class AgentList(msgspec.Struct):
    agents: list[AgentOut]


class AgentPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    #: the most conversations assignment gives the agent at once
    max_concurrent: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None


async def _views(db: Database, gateway: Gateway, tenant_id: str, agents: list[Agent]) -> list[AgentOut]:
    ids = [a.id for a in agents]
    online = gateway.online_agents(tenant_id)
    async with db.session() as s:
        counts = dict((await s.exec(
            select(Conversation.assignee_id, func.count()).where(
                Conversation.tenant_id == tenant_id, Conversation.status == "assigned",
                col(Conversation.assignee_id).in_(ids))
            .group_by(Conversation.assignee_id))).all()) if ids else {}
    teams = await teams_by_agent(db, tenant_id, ids)
    return [AgentOut(id=a.id, name=a.name, email=a.email, active=a.active, max_concurrent=a.max_concurrent,
                     online=a.id in online, open_conversations=int(counts.get(a.id, 0)),
                     team_ids=list(teams.get(a.id, [])), created_at=a.created_at) for a in agents]


async def _agent(db: Database, tenant_id: str, agent_id: str) -> Agent:
    async with db.session() as s:
        agent = await s.get(Agent, agent_id)
    if agent is None or agent.tenant_id != tenant_id:
        raise NotFound("no such agent")
    return agent


@get("/v1/agents")
async def list_agents(principal: Auth, db: DbDep, gateway: GatewayDep, limit: FromQuery[int] = 500) -> AgentList:
    require(principal, "admin")
    if not 1 <= limit <= 1000:
        raise BadInput("limit must be 1..1000", field="limit")
    async with db.session() as s:
        agents = list((await s.exec(select(Agent).where(Agent.tenant_id == principal.tenant_id)
                                    .order_by(col(Agent.name), col(Agent.id)).limit(limit))).all())
    return AgentList(agents=await _views(db, gateway, principal.tenant_id, agents))


@get("/v1/agents/{agent_id:str}")
async def get_agent(principal: Auth, db: DbDep, gateway: GatewayDep, agent_id: FromPath[str]) -> AgentOut:
    require(principal, "admin")
    agent = await _agent(db, principal.tenant_id, agent_id)
    return (await _views(db, gateway, principal.tenant_id, [agent]))[0]


@patch("/v1/agents/{agent_id:str}")
async def patch_agent(principal: Auth, db: DbDep, gateway: GatewayDep, router: RouterDep, agent_id: FromPath[str],
                      data: JSONBody[AgentPatch]) -> AgentOut:
    """Rename the agent or change its capacity; a lower capacity takes nothing away, it only
    holds back new assignments until the agent is under it."""
    require(principal, "admin")
    async with db.write() as s:
        agent = await s.get(Agent, agent_id)
        if agent is None or agent.tenant_id != principal.tenant_id:
            raise NotFound("no such agent")
        if data.name is not None:
            if not data.name.strip():
                raise BadInput("name must not be blank", field="name")
            agent.name = data.name.strip()
        raised = data.max_concurrent is not None and data.max_concurrent > agent.max_concurrent
        if data.max_concurrent is not None:
            agent.max_concurrent = data.max_concurrent
        s.add(agent)
    if raised:
        # room for more: conversations waiting in the queue may go to this agent now
        await router.assign_waiting(principal.tenant_id)
    return (await _views(db, gateway, principal.tenant_id, [agent]))[0]


agent_handlers = [list_agents, get_agent, patch_agent]
