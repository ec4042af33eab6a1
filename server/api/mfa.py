"""Two-factor sign-in (server.accounts.mfa): an agent enrols an authenticator and turns it off with their
password and a code; an admin requires it for the tenant's agents and resets an agent who lost theirs."""

from typing import Annotated, Any

import msgspec
from litestar import Request, get, post, put
from litestar.params import FromPath, JSONBody

from server.accounts.mfa import enrolment, new_recovery_codes
from server.api.auth import agent_by_password, second_factor
from server.api.deps import Auth, DbDep, LoginGuardDep, PasswordsDep, require
from server.core.models import Agent, Tenant
from server.errors import BadInput, Forbidden, NotFound

__all__ = ["mfa_handlers"]

Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320)]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class Credentials(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Password
    tenant_id: str | None = None


class CredentialsAndCode(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Password
    otp: Code
    tenant_id: str | None = None


class MfaPolicy(msgspec.Struct, forbid_unknown_fields=True):
    required: bool


ISSUER = "Parley"


@post("/v1/auth/mfa/enroll", status_code=200)
async def enroll(request: Request[Any, Any, Any], data: JSONBody[Credentials], db: DbDep, login_guard: LoginGuardDep,
                 passwords: PasswordsDep) -> dict[str, Any]:
    """A new authenticator secret for the agent (``secret`` and an ``otpauth_uri`` for its QR code); it is
    on once ``/v1/auth/mfa/confirm`` gets a code from it."""
    found = await agent_by_password(request, data.email, data.password, data.tenant_id, db, login_guard, passwords)
    if found.totp_enabled:
        raise BadInput("two-factor sign-in is already on: turn it off first", field="otp")
    e = enrolment(found.email, ISSUER)
    async with db.write() as s:
        agent = await s.get(Agent, found.id)
        assert agent is not None
        agent.totp_secret, agent.totp_last_step = e.secret, 0
        s.add(agent)
    return {"secret": e.secret, "otpauth_uri": e.uri}


@post("/v1/auth/mfa/confirm", status_code=200)
async def confirm(request: Request[Any, Any, Any], data: JSONBody[CredentialsAndCode], db: DbDep,
                  login_guard: LoginGuardDep, passwords: PasswordsDep) -> dict[str, Any]:
    """A first code from the authenticator turns two-factor sign-in on; answers the recovery codes, shown
    this once."""
    found = await agent_by_password(request, data.email, data.password, data.tenant_id, db, login_guard, passwords)
    if found.totp_enabled or not found.totp_secret:
        raise BadInput("no enrolment in progress: start with /v1/auth/mfa/enroll", field="otp")
    codes, hashes = new_recovery_codes()
    async with db.write() as s:
        agent = await s.get(Agent, found.id)
        assert agent is not None and agent.totp_secret is not None
        second_factor(agent, data.otp, login_guard, data.email, secret=agent.totp_secret)
        agent.totp_enabled, agent.recovery_codes = True, hashes
        s.add(agent)
    return {"enabled": True, "recovery_codes": codes}


@post("/v1/auth/mfa/disable", status_code=200)
async def disable(request: Request[Any, Any, Any], data: JSONBody[CredentialsAndCode], db: DbDep,
                  login_guard: LoginGuardDep, passwords: PasswordsDep) -> dict[str, Any]:
    """Turn two-factor sign-in off (a code or a recovery code), unless the tenant requires it."""
    found = await agent_by_password(request, data.email, data.password, data.tenant_id, db, login_guard, passwords)
    async with db.write() as s:
        agent = await s.get(Agent, found.id)
        tenant = await s.get(Tenant, found.tenant_id)
        assert agent is not None and tenant is not None
        if tenant.mfa_required:
            raise Forbidden("this organisation requires two-factor sign-in", field="otp")
        if not agent.totp_enabled:
            return {"enabled": False}
        second_factor(agent, data.otp, login_guard, data.email)
        _clear(agent)
        s.add(agent)
    return {"enabled": False}


def _clear(agent: Agent) -> None:
    agent.totp_enabled, agent.totp_secret, agent.totp_last_step, agent.recovery_codes = False, None, 0, []


@get("/v1/tenant/mfa")
async def get_mfa_policy(principal: Auth, db: DbDep) -> dict[str, Any]:
    require(principal, "admin")
    async with db.session() as s:
        tenant = await s.get(Tenant, principal.tenant_id)
    assert tenant is not None
    return {"required": tenant.mfa_required}


@put("/v1/tenant/mfa")
async def put_mfa_policy(principal: Auth, data: JSONBody[MfaPolicy], db: DbDep) -> dict[str, Any]:
    """Require a second factor of every agent of the tenant (an agent without one is asked to enrol)."""
    require(principal, "admin")
    async with db.write() as s:
        tenant = await s.get(Tenant, principal.tenant_id)
        assert tenant is not None
        tenant.mfa_required = data.required
        s.add(tenant)
    return {"required": data.required}


@post("/v1/agents/{agent_id:str}/mfa/reset", status_code=200)
async def reset_mfa(principal: Auth, agent_id: FromPath[str], db: DbDep) -> dict[str, Any]:
    """An agent who lost their authenticator: two-factor sign-in off (they enrol again) and their
    sessions ended (admins)."""
    require(principal, "admin")
    async with db.write() as s:
        agent = await s.get(Agent, agent_id)
        if agent is None or agent.tenant_id != principal.tenant_id:
            raise NotFound("agent not found")
        _clear(agent)
        agent.token_version += 1
        s.add(agent)
    return {"enabled": False}


mfa_handlers = [enroll, confirm, disable, get_mfa_policy, put_mfa_policy, reset_mfa]
