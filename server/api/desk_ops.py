"""The desk's operations over REST: private notes with @mentions and an agent's mentions, transfer
to an agent or a team, and a tenant's routing rules (docs/protocol.md "Desk operations")."""

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from server.accounts.teams import list_teams
from server.api.conversations import charge_message
from server.api.deps import Auth, ChatDep, DbDep, GatewayDep, LimiterDep, RouterDep, SettingsDep, require
from server.chat.service import conversation_json, iso, message_json
from server.desk import notes, routing
from server.desk.models import RoutingRule
from server.errors import BadInput
from server.handoff.notes import post_note
from server.handoff.snooze import snooze, wake
from server.handoff.transfer import transfer

__all__ = ["desk_ops_handlers"]

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class NoteIn(msgspec.Struct, forbid_unknown_fields=True):
    text: str
    client_msg_id: str


class MentionedOut(msgspec.Struct):
    agent_id: str
    name: str


class NoteOut(msgspec.Struct):
    message: dict[str, Any]
    mentions: list[MentionedOut]
    unresolved: list[str]
    duplicate: bool


@post("/v1/conversations/{conversation_id:str}/notes", status_code=201)
async def create_note(principal: Auth, conversation_id: FromPath[str], data: JSONBody[NoteIn], chat: ChatDep,
                      settings: SettingsDep, limiter: LimiterDep, gateway: GatewayDep) -> NoteOut:
    """A private note (agents): seen by the tenant's agents only. ``@name`` or ``@email`` mentions an
    active agent of the tenant, who gets a ``note.mention`` frame and a push to their devices."""
    require(principal, "agent")
    await charge_message(limiter, gateway, principal)
    done = await post_note(chat, principal, conversation_id, data.text, client_msg_id=data.client_msg_id,
                           max_mentions=settings.note_max_mentions)
    return NoteOut(message=message_json(done.message), mentions=[MentionedOut(a.id, a.name) for a in done.mentioned],
                   unresolved=done.unresolved, duplicate=not done.created)


class MentionOut(msgspec.Struct):
    conversation_id: str
    message_id: str
    seq: int
    author_id: str
    author_name: str | None
    text: str
    created_at: str
    read_at: str | None


class MentionList(msgspec.Struct):
    mentions: list[MentionOut]
    unread: int


@get("/v1/mentions")
async def my_mentions(principal: Auth, db: DbDep, settings: SettingsDep, unread: FromQuery[bool] = False,
                      limit: FromQuery[int] = 50) -> MentionList:
    """The notes that mention the calling agent, newest first (``unread=true``: not yet read)."""
    require(principal, "agent")
    if not 1 <= limit <= settings.mentions_page_max:
        raise BadInput(f"limit must be 1..{settings.mentions_page_max}", field="limit")
    rows = await notes.list_mentions(db, principal.tenant_id, principal.id, unread_only=unread, limit=limit)
    return MentionList(mentions=[MentionOut(
        conversation_id=v.mention.conversation_id, message_id=v.message.id, seq=v.message.seq,
        author_id=v.mention.author_id, author_name=v.message.sender_name, text=v.message.text,
        created_at=iso(v.mention.created_at), read_at=iso(v.mention.read_at) if v.mention.read_at else None)
        for v in rows], unread=await notes.unread_count(db, principal.tenant_id, principal.id))


@post("/v1/mentions/{message_id:str}/read", status_code=200)
async def read_mention(principal: Auth, db: DbDep, message_id: FromPath[str]) -> dict[str, Any]:
    require(principal, "agent")
    at = await notes.mark_read(db, principal.tenant_id, principal.id, message_id)
    return {"message_id": message_id, "read_at": iso(at)}


class TransferIn(msgspec.Struct, forbid_unknown_fields=True):
    agent_id: Id | None = None
    team_id: Id | None = None
    comment: Annotated[str, msgspec.Meta(max_length=1000)] | None = None


@post("/v1/conversations/{conversation_id:str}/transfer", status_code=200)
async def transfer_conversation(principal: Auth, conversation_id: FromPath[str], data: JSONBody[TransferIn],
                                router: RouterDep) -> dict[str, Any]:
    """To another agent (``agent_id``) or a team (``team_id``), with a ``comment`` kept as a note."""
    conv = await transfer(router, principal, conversation_id, agent_id=data.agent_id, team_id=data.team_id,
                          comment=data.comment)
    return {"conversation": conversation_json(conv)}


class SnoozeIn(msgspec.Struct, forbid_unknown_fields=True):
    until: datetime  # ISO 8601; without a zone it is UTC


@post("/v1/conversations/{conversation_id:str}/snooze", status_code=200)
async def snooze_conversation(principal: Auth, conversation_id: FromPath[str], data: JSONBody[SnoozeIn],
                              chat: ChatDep, settings: SettingsDep) -> dict[str, Any]:
    """Its agent puts an assigned conversation aside until ``until``: status ``snoozed``, out of the
    agent's list and capacity, back (``assigned``) at the time or as soon as the user writes."""
    conv = await snooze(chat, principal, conversation_id, data.until, max_s=settings.snooze_max_s)
    until = await routing.snoozed_until(chat.db, conv.id)
    return {"conversation": conversation_json(conv), "snoozed_until": iso(until) if until else None}


@post("/v1/conversations/{conversation_id:str}/wake", status_code=200)
async def wake_conversation(principal: Auth, conversation_id: FromPath[str], chat: ChatDep) -> dict[str, Any]:
    """Its agent takes a snoozed conversation up before the time."""
    return {"conversation": conversation_json(await wake(chat, principal, conversation_id))}


class RuleIn(msgspec.Struct, forbid_unknown_fields=True):
    team_id: Id
    kind: Annotated[str, msgspec.Meta(max_length=16)]
    keyword: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    attribute: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    value: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class RuleOut(msgspec.Struct):
    id: str
    team_id: str
    kind: str
    keyword: str | None
    attribute: str | None
    value: str | None
    position: int
    created_at: datetime


def _rule(r: RoutingRule) -> RuleOut:
    return RuleOut(id=r.id, team_id=r.team_id, kind=r.kind, keyword=r.keyword, attribute=r.attribute, value=r.value,
                   position=r.position, created_at=r.created_at)


@get("/v1/routing-rules")
async def get_rules(principal: Auth, db: DbDep) -> dict[str, list[RuleOut]]:
    """The tenant's rules sending handed-off conversations to a team, in the order they are tried."""
    require(principal, "admin")
    return {"routing_rules": [_rule(r) for r in await routing.list_rules(db, principal.tenant_id)]}


@post("/v1/routing-rules", status_code=201)
async def post_rule(principal: Auth, db: DbDep, settings: SettingsDep, data: JSONBody[RuleIn]) -> RuleOut:
    """``{team_id, kind: "topic", keyword}`` or ``{team_id, kind: "attribute", attribute, value}``."""
    require(principal, "admin")
    spec = routing.RuleSpec(team_id=data.team_id, kind=data.kind, keyword=data.keyword, attribute=data.attribute,
                            value=data.value)
    return _rule(await routing.create_rule(db, principal.tenant_id, spec,
                                           max_rules=settings.max_routing_rules_per_tenant))


@delete("/v1/routing-rules/{rule_id:str}", status_code=204)
async def delete_rule(principal: Auth, db: DbDep, rule_id: FromPath[str]) -> None:
    require(principal, "admin")
    await routing.delete_rule(db, principal.tenant_id, rule_id)


class ColleagueOut(msgspec.Struct):
    id: str
    name: str
    email: str
    online: bool
    free: int  # conversations assignment may still give them


class TeamRef(msgspec.Struct):
    id: str
    name: str
    agent_ids: list[str]


class Directory(msgspec.Struct):
    agents: list[ColleagueOut]
    teams: list[TeamRef]


@get("/v1/desk/directory")
async def directory(principal: Auth, db: DbDep, gateway: GatewayDep) -> Directory:
    """The tenant's active agents (online, free capacity) and teams: whom to transfer to or mention."""
    require(principal, "agent", "admin")
    agents = await notes.active_agents(db, principal.tenant_id)
    loads = await routing.assigned_counts(db, principal.tenant_id, [a.id for a in agents])
    online = gateway.online_agents(principal.tenant_id)
    teams = await list_teams(db, principal.tenant_id)
    return Directory(agents=[ColleagueOut(a.id, a.name, a.email, a.id in online,
                                          max(0, a.max_concurrent - loads.get(a.id, 0))) for a in agents],
                     teams=[TeamRef(t.id, t.name, t.agent_ids) for t in teams])


desk_ops_handlers: list[Any] = [create_note, my_mentions, read_mention, transfer_conversation, get_rules, post_rule,
                                delete_rule, directory, snooze_conversation, wake_conversation]
