"""Teams of human agents (admin only): create, rename, delete, add and remove members."""

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import delete, get, patch, post, put
from litestar.params import FromPath, FromQuery, JSONBody

from server.accounts.teams import (
    TeamView,
    add_member,
    create_team,
    delete_team,
    get_team,
    list_teams,
    remove_member,
    rename_team,
)
from server.api.deps import Auth, DbDep, SettingsDep, require
from server.errors import BadInput

__all__ = ["TeamOut", "team_handlers"]

TeamName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class TeamIn(msgspec.Struct, forbid_unknown_fields=True):
    name: TeamName


class TeamOut(msgspec.Struct):
    id: str
    name: str
    agent_ids: list[str]
    created_at: datetime


class TeamList(msgspec.Struct):
    teams: list[TeamOut]


def _out(t: TeamView) -> TeamOut:
    return TeamOut(id=t.id, name=t.name, agent_ids=t.agent_ids, created_at=t.created_at)


@get("/v1/teams")
async def get_teams(principal: Auth, db: DbDep, limit: FromQuery[int] = 500) -> TeamList:
    require(principal, "admin")
    if not 1 <= limit <= 1000:
        raise BadInput("limit must be 1..1000", field="limit")
    return TeamList(teams=[_out(t) for t in await list_teams(db, principal.tenant_id,
                                                             limit=limit)])


@post("/v1/teams", status_code=201)
async def post_team(principal: Auth, db: DbDep, settings: SettingsDep, data: JSONBody[TeamIn]) -> TeamOut:
    require(principal, "admin")
    return _out(await create_team(db, principal.tenant_id, data.name, max_teams=settings.max_teams_per_tenant))


@get("/v1/teams/{team_id:str}")
async def get_one_team(principal: Auth, db: DbDep, team_id: FromPath[str]) -> TeamOut:
    require(principal, "admin")
    return _out(await get_team(db, principal.tenant_id, team_id))


@patch("/v1/teams/{team_id:str}")
async def patch_team(principal: Auth, db: DbDep, team_id: FromPath[str],
                     data: JSONBody[TeamIn]) -> TeamOut:
    require(principal, "admin")
    return _out(await rename_team(db, principal.tenant_id, team_id, data.name))


@delete("/v1/teams/{team_id:str}", status_code=204)
async def delete_one_team(principal: Auth, db: DbDep, team_id: FromPath[str]) -> None:
    """Delete the team and its memberships; its agents stay."""
    require(principal, "admin")
    await delete_team(db, principal.tenant_id, team_id)


@put("/v1/teams/{team_id:str}/agents/{agent_id:str}", status_code=200)
async def put_team_member(principal: Auth, db: DbDep, team_id: FromPath[str],
                          agent_id: FromPath[str]) -> TeamOut:
    """Add an agent to the team (idempotent)."""
    require(principal, "admin")
    return _out(await add_member(db, principal.tenant_id, team_id, agent_id))


@delete("/v1/teams/{team_id:str}/agents/{agent_id:str}", status_code=200)
async def delete_team_member(principal: Auth, db: DbDep, team_id: FromPath[str],
                             agent_id: FromPath[str]) -> TeamOut:
    require(principal, "admin")
    return _out(await remove_member(db, principal.tenant_id, team_id, agent_id))


team_handlers = [get_teams, post_team, get_one_team, patch_team, delete_one_team, put_team_member,
                 delete_team_member]
