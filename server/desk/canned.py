"""Canned responses: a tenant's (its admins manage them) and each agent's own. An agent sees
the tenant's and their own; a response of another tenant or another agent is ``not_found``
exactly like a missing one. Rendering fills the variables for one conversation."""

from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, or_
from sqlmodel import col, select

from server.accounts.auth import Principal
from server.core.db import Database
from server.core.models import Agent, Conversation, User, utcnow
from server.desk.models import CannedResponse
from server.desk.variables import check_variables, render
from server.errors import BadInput, Forbidden, NotFound

__all__ = ["CannedLimits", "create", "delete", "get", "list_for", "render_for", "update"]


@dataclass(frozen=True)
class CannedLimits:
    max_per_owner: int
    max_chars: int


def _owner(p: Principal) -> str | None:
    """Whose responses the caller manages: admins the tenant's (None), agents their own."""
    if p.role == "admin":
        return None
    if p.role == "agent":
        return p.id
    raise Forbidden("canned responses are for agents and admins")


def _clean(title: str, shortcut: str, text: str, limits: CannedLimits) -> tuple[str, str, str]:
    title, shortcut = title.strip(), shortcut.strip().removeprefix("/")
    if not title:
        raise BadInput("title must not be blank", field="title")
    if not shortcut or not all(c.isalnum() or c in "-_" for c in shortcut):
        raise BadInput("shortcut must be letters, digits, '-' or '_' (a leading '/' is allowed)", field="shortcut")
    if not text.strip():
        raise BadInput("text must not be blank", field="text")
    if len(text) > limits.max_chars:
        raise BadInput(f"text is over {limits.max_chars} characters", field="text")
    check_variables(text)
    return title, shortcut.lower(), text


def _same_owner(owner: str | None) -> ColumnElement[bool]:
    return col(CannedResponse.agent_id).is_(None) if owner is None else col(CannedResponse.agent_id) == owner


async def list_for(db: Database, p: Principal) -> list[CannedResponse]:
    """An agent: the tenant's and their own; an admin: the tenant's."""
    owner = _owner(p)
    q = select(CannedResponse).where(CannedResponse.tenant_id == p.tenant_id)
    if owner is None:
        q = q.where(col(CannedResponse.agent_id).is_(None))
    else:
        q = q.where(or_(_same_owner(None), _same_owner(owner)))
    q = q.order_by(col(CannedResponse.shortcut), col(CannedResponse.agent_id).is_(None), col(CannedResponse.id))
    async with db.session() as s:
        return list((await s.exec(q)).all())


async def get(db: Database, p: Principal, response_id: str) -> CannedResponse:
    """One the caller may see."""
    owner = _owner(p)
    async with db.session() as s:
        row = await s.get(CannedResponse, response_id)
    if row is None or row.tenant_id != p.tenant_id or row.agent_id not in (None, owner):
        raise NotFound("canned response not found")
    return row


async def _editable(db: Database, p: Principal, response_id: str) -> CannedResponse:
    row = await get(db, p, response_id)
    if row.agent_id != _owner(p):
        raise Forbidden("a tenant's canned responses are managed by its admins")
    return row


async def _shortcut_taken(db: Database, tenant_id: str, owner: str | None, shortcut: str,
                          except_id: str | None = None) -> None:
    q = select(CannedResponse.id).where(CannedResponse.tenant_id == tenant_id, _same_owner(owner),
                                        CannedResponse.shortcut == shortcut)
    async with db.session() as s:
        ids = set((await s.exec(q)).all())
    if ids - {except_id}:
        raise BadInput(f"the shortcut /{shortcut} is already used", field="shortcut")


async def create(db: Database, p: Principal, *, title: str, shortcut: str, text: str,
                 limits: CannedLimits) -> CannedResponse:
    owner = _owner(p)
    title, shortcut, text = _clean(title, shortcut, text, limits)
    async with db.session() as s:
        count = (await s.exec(select(func.count()).select_from(CannedResponse).where(
            CannedResponse.tenant_id == p.tenant_id, _same_owner(owner)))).one()
    if count >= limits.max_per_owner:
        raise BadInput(f"at most {limits.max_per_owner} canned responses per owner", field="shortcut")
    await _shortcut_taken(db, p.tenant_id, owner, shortcut)
    row = CannedResponse(tenant_id=p.tenant_id, agent_id=owner, title=title, shortcut=shortcut, text=text)
    async with db.session() as s:
        s.add(row)
        await s.commit()
        await s.refresh(row)
    return row


async def update(db: Database, p: Principal, response_id: str, *, title: str | None, shortcut: str | None,
                 text: str | None, limits: CannedLimits) -> CannedResponse:
    row = await _editable(db, p, response_id)
    title, shortcut, text = _clean(title if title is not None else row.title,
                                   shortcut if shortcut is not None else row.shortcut,
                                   text if text is not None else row.text, limits)
    await _shortcut_taken(db, p.tenant_id, row.agent_id, shortcut, except_id=row.id)
    async with db.session() as s:
        fresh = await s.get(CannedResponse, row.id)
        if fresh is None:
            raise NotFound("canned response not found")
        fresh.title, fresh.shortcut, fresh.text, fresh.updated_at = title, shortcut, text, utcnow()
        s.add(fresh)
        await s.commit()
        await s.refresh(fresh)
    return fresh


async def delete(db: Database, p: Principal, response_id: str) -> None:
    row = await _editable(db, p, response_id)
    async with db.session() as s:
        fresh = await s.get(CannedResponse, row.id)
        if fresh is not None:
            await s.delete(fresh)
            await s.commit()


async def render_for(db: Database, p: Principal, response_id: str, conversation_id: str) -> str:
    """The response's text with the variables of one of the tenant's conversations filled in."""
    if p.role != "agent":
        raise Forbidden("rendering a canned response is for agents")
    row = await get(db, p, response_id)
    async with db.session() as s:
        conv = await s.get(Conversation, conversation_id)
        if conv is None or conv.tenant_id != p.tenant_id:
            raise NotFound("conversation not found")
        user = (await s.exec(select(User).where(User.tenant_id == p.tenant_id,
                                                User.external_id == conv.user_id))).first()
        agent = await s.get(Agent, p.id)
    agent_name = agent.name if agent is not None and agent.tenant_id == p.tenant_id else (p.name or "")
    values = {"user.name": (user.name if user is not None and user.name else ""),
              "agent.name": agent_name, "conversation.id": conv.id}
    return render(row.text, values)
