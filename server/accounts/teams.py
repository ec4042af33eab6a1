"""Teams of human agents: a tenant's named groups of agents (an agent may be in several). The
tables, and the operations the admin REST routes use; every one is scoped to a tenant, and a
team or agent of another tenant is ``not_found`` exactly like a missing one."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, DateTime, Index, UniqueConstraint, delete, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from server.core.db import Database
from server.core.models import Agent, new_id, utcnow
from server.errors import BadInput, NotFound

__all__ = [
    "Team",
    "TeamMember",
    "TeamView",
    "add_member",
    "create_team",
    "delete_team",
    "get_team",
    "list_teams",
    "remove_member",
    "rename_team",
    "teams_by_agent",
]


class Team(SQLModel, table=True):
    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", index=True, max_length=32)
    name: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class TeamMember(SQLModel, table=True):
    __tablename__ = "team_members"
    __table_args__ = (Index("ix_team_members_agent", "tenant_id", "agent_id"),)
    team_id: str = Field(foreign_key="teams.id", primary_key=True, max_length=32)
    agent_id: str = Field(foreign_key="agents.id", primary_key=True, max_length=32)
    tenant_id: str = Field(max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


@dataclass(frozen=True)
class TeamView:
    id: str
    name: str
    agent_ids: list[str]
    created_at: datetime


def _name(name: str) -> str:
    clean = name.strip()
    if not clean:
        raise BadInput("name must not be blank", field="name")
    return clean


async def _members(db: Database, tenant_id: str, team_ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    if not team_ids:
        return out
    async with db.session() as s:
        rows = (await s.exec(select(TeamMember.team_id, TeamMember.agent_id).where(
            TeamMember.tenant_id == tenant_id, col(TeamMember.team_id).in_(team_ids))
            .order_by(col(TeamMember.created_at), col(TeamMember.agent_id)))).all()
    for team_id, agent_id in rows:
        out[team_id].append(agent_id)
    return out


def _view(team: Team, members: dict[str, list[str]]) -> TeamView:
    return TeamView(team.id, team.name, list(members.get(team.id, [])), team.created_at)


async def list_teams(db: Database, tenant_id: str, *, limit: int = 500) -> list[TeamView]:
    async with db.session() as s:
        teams = list((await s.exec(select(Team).where(Team.tenant_id == tenant_id)
                                   .order_by(col(Team.name), col(Team.id)).limit(limit))).all())
    members = await _members(db, tenant_id, [t.id for t in teams])
    return [_view(t, members) for t in teams]


async def get_team(db: Database, tenant_id: str, team_id: str) -> TeamView:
    async with db.session() as s:
        team = await s.get(Team, team_id)
    if team is None or team.tenant_id != tenant_id:
        raise NotFound("no such team")
    return _view(team, await _members(db, tenant_id, [team.id]))


async def create_team(db: Database, tenant_id: str, name: str, *, max_teams: int) -> TeamView:
    clean = _name(name)
    try:
        async with db.write() as s:
            n = (await s.exec(select(func.count()).select_from(Team).where(Team.tenant_id == tenant_id))).one()
            if int(n) >= max_teams:
                raise BadInput(f"at most {max_teams} teams per tenant")
            team = Team(tenant_id=tenant_id, name=clean)
            s.add(team)
    except IntegrityError:
        raise BadInput("a team with this name exists", field="name") from None
    return _view(team, {})


async def rename_team(db: Database, tenant_id: str, team_id: str, name: str) -> TeamView:
    clean = _name(name)
    try:
        async with db.write() as s:
            team = await s.get(Team, team_id)
            if team is None or team.tenant_id != tenant_id:
                raise NotFound("no such team")
            team.name = clean
            s.add(team)
    except IntegrityError:
        raise BadInput("a team with this name exists", field="name") from None
    return await get_team(db, tenant_id, team_id)


async def delete_team(db: Database, tenant_id: str, team_id: str) -> None:
    """Delete a team and its memberships; the agents themselves stay."""
    async with db.write() as s:
        team = await s.get(Team, team_id)
        if team is None or team.tenant_id != tenant_id:
            raise NotFound("no such team")
        await s.exec(delete(TeamMember).where(col(TeamMember.team_id) == team_id))
        await s.delete(team)


async def _team_and_agent(s: AsyncSession, tenant_id: str, team_id: str, agent_id: str) -> None:
    team = await s.get(Team, team_id)
    if team is None or team.tenant_id != tenant_id:
        raise NotFound("no such team")
    agent = await s.get(Agent, agent_id)
    if agent is None or agent.tenant_id != tenant_id:
        raise NotFound("no such agent")


async def add_member(db: Database, tenant_id: str, team_id: str, agent_id: str) -> TeamView:
    """Put an agent in a team; adding a member twice changes nothing."""
    async with db.write() as s:
        await _team_and_agent(s, tenant_id, team_id, agent_id)
        if await s.get(TeamMember, (team_id, agent_id)) is None:
            s.add(TeamMember(team_id=team_id, agent_id=agent_id, tenant_id=tenant_id))
    return await get_team(db, tenant_id, team_id)


async def remove_member(db: Database, tenant_id: str, team_id: str, agent_id: str) -> TeamView:
    async with db.write() as s:
        await _team_and_agent(s, tenant_id, team_id, agent_id)
        member = await s.get(TeamMember, (team_id, agent_id))
        if member is None:
            raise NotFound("this agent is not in this team")
        await s.delete(member)
    return await get_team(db, tenant_id, team_id)


async def teams_by_agent(db: Database, tenant_id: str, agent_ids: list[str]) -> dict[str, list[str]]:
    """The ids of the teams each agent is in."""
    out: dict[str, list[str]] = defaultdict(list)
    if not agent_ids:
        return out
    async with db.session() as s:
        rows = (await s.exec(select(TeamMember.agent_id, TeamMember.team_id).where(
            TeamMember.tenant_id == tenant_id, col(TeamMember.agent_id).in_(agent_ids))
            .order_by(col(TeamMember.created_at), col(TeamMember.team_id)))).all()
    for agent_id, team_id in rows:
        out[agent_id].append(team_id)
    return out
