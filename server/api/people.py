"""End-user profiles and human agents."""

from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from litestar import post, put
from litestar.params import FromPath, JSONBody
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from server.accounts.passwords import check_password_policy
from server.api.deps import Auth, DbDep, PasswordsDep, SettingsDep, require
from server.core.models import Agent, User, utcnow
from server.errors import BadInput, Conflict, NotFound

__all__ = ["people_handlers"]

Str200 = Annotated[str, msgspec.Meta(max_length=200)]


class UserProfile(msgspec.Struct, forbid_unknown_fields=True):
    name: Str200 | None = None
    email: Annotated[str, msgspec.Meta(max_length=320)] | None = None
    locale: Annotated[str, msgspec.Meta(max_length=35)] | None = None
    timezone: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    attributes: dict[str, Any] | None = None


class NewAgent(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    max_concurrent: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5


@put("/v1/users/{user_id:str}")
async def put_user(principal: Auth, user_id: FromPath[str],
                   data: JSONBody[UserProfile], db: DbDep) -> dict[str, Any]:
    require(principal, "admin")
    if not user_id or len(user_id) > 200:
        raise BadInput("user_id must be 1..200 characters", field="user_id")
    if data.timezone is not None:
        try:
            ZoneInfo(data.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise BadInput(f"unknown timezone {data.timezone!r}", field="timezone") from None
    if data.attributes is not None and len(msgspec.json.encode(data.attributes)) > 16384:
        raise BadInput("attributes must be at most 16 KiB of JSON", field="attributes")
    async with db.write() as s:
        user = (await s.exec(select(User).where(User.tenant_id == principal.tenant_id,
                                                User.external_id == user_id))).first()
        if user is None:
            user = User(tenant_id=principal.tenant_id, external_id=user_id)
        for field in ("name", "email", "locale", "timezone", "attributes"):
            value = getattr(data, field)
            if value is not None:
                setattr(user, field, value)
        user.updated_at = utcnow()
        s.add(user)
    return {"id": user.external_id, "name": user.name, "email": user.email, "locale": user.locale,
            "timezone": user.timezone, "attributes": user.attributes}


@post("/v1/agents", status_code=201)
async def create_agent(principal: Auth, data: JSONBody[NewAgent], db: DbDep, settings: SettingsDep,
                       passwords: PasswordsDep) -> dict[str, Any]:
    require(principal, "admin")
    check_password_policy(data.password, min_length=settings.min_password_length, email=data.email,
                          name=data.name)
    password_hash = await passwords.hash(data.password)
    try:
        async with db.write() as s:
            agent = Agent(tenant_id=principal.tenant_id, name=data.name, email=data.email.lower(),
                          password_hash=password_hash, max_concurrent=data.max_concurrent)
            s.add(agent)
    except IntegrityError:
        raise Conflict("an agent with this email exists", code="validation_failed") from None
    return _agent_json(agent)


class NewPassword(msgspec.Struct, forbid_unknown_fields=True):
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


async def _agent_for_update(s: Any, principal: Any, agent_id: str) -> Agent:
    agent = await s.get(Agent, agent_id)
    if agent is None or agent.tenant_id != principal.tenant_id:
        raise NotFound("no such agent")
    return agent  # type: ignore[no-any-return]


def _agent_json(agent: Agent) -> dict[str, Any]:
    return {"id": agent.id, "name": agent.name, "email": agent.email, "max_concurrent": agent.max_concurrent,
            "active": agent.active}


@post("/v1/agents/{agent_id:str}/password", status_code=200)
async def reset_agent_password(principal: Auth, agent_id: FromPath[str],
                               data: JSONBody[NewPassword], db: DbDep, settings: SettingsDep,
                               passwords: PasswordsDep) -> dict[str, Any]:
    """Set a new password; the agent's tokens issued so far stop working."""
    require(principal, "admin")
    async with db.session() as s:
        agent = await _agent_for_update(s, principal, agent_id)
    check_password_policy(data.password, min_length=settings.min_password_length, email=agent.email,
                          name=agent.name)
    password_hash = await passwords.hash(data.password)
    async with db.write() as s:
        agent = await _agent_for_update(s, principal, agent_id)
        agent.password_hash, agent.token_version = password_hash, agent.token_version + 1
        s.add(agent)
    return _agent_json(agent)


@post("/v1/agents/{agent_id:str}/deactivate", status_code=200)
async def deactivate_agent(principal: Auth,
                           agent_id: FromPath[str], db: DbDep) -> dict[str, Any]:
    """The agent can no longer log in, and its tokens stop working (REST and new sockets)."""
    require(principal, "admin")
    async with db.write() as s:
        agent = await _agent_for_update(s, principal, agent_id)
        agent.active, agent.token_version = False, agent.token_version + 1
        s.add(agent)
    return _agent_json(agent)


@post("/v1/agents/{agent_id:str}/activate", status_code=200)
async def activate_agent(principal: Auth, agent_id: FromPath[str], db: DbDep) -> dict[str, Any]:
    require(principal, "admin")
    async with db.write() as s:
        agent = await _agent_for_update(s, principal, agent_id)
        agent.active = True
        s.add(agent)
    return _agent_json(agent)


people_handlers = [put_user, create_agent, reset_agent_password, deactivate_agent, activate_agent]
