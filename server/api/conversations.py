"""Conversations and their history over REST, with the same promises as the socket."""

from typing import Annotated, Any

import msgspec
from litestar import get, post
from litestar.params import FromPath, FromQuery, JSONBody

from server.accounts.auth import Principal
from server.api.deps import Auth, ChatDep, DbDep, GatewayDep, LimiterDep, RouterDep, SettingsDep, require
from server.chat.service import ChatService, Sender, conversation_json, message_json
from server.core.models import Status
from server.core.ratelimit import Charge, Limiter, enforce, tenant_key, user_key
from server.desk.labels import get_label
from server.errors import BadInput, Forbidden, NotFound
from server.handoff.router import Router
from server.realtime.gateway import Gateway

__all__ = ["conversation_handlers"]


class StartConversation(msgspec.Struct, forbid_unknown_fields=True):
    bot_id: str | None = None
    user_id: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    text: str | None = None
    client_msg_id: str | None = None


AttachmentId = Annotated[str, msgspec.Meta(max_length=64)]


class PostMessage(msgspec.Struct, forbid_unknown_fields=True):
    text: str
    client_msg_id: str
    attachments: Annotated[list[AttachmentId], msgspec.Meta(max_length=100)] | None = None  # ids of uploads
    reply_to: Annotated[str, msgspec.Meta(max_length=64)] | None = None  # the id of the message it quotes
    rich: dict[str, Any] | None = None  # quick replies, a card or a form (agents; server.chat.rich)


class StatusChange(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=500)] | None = None


async def charge_message(limiter: Limiter, gateway: Gateway, p: Principal) -> None:
    """The same buckets as a socket ``send``: the user's and the tenant's."""
    await enforce(limiter, Charge(gateway.limits.user_frames, user_key(p.tenant_id, p.role, p.id)),
                  Charge(gateway.limits.tenant_messages, tenant_key(p.tenant_id)),
                  detail="too many messages; slow down")


@post("/v1/conversations", status_code=201)
async def start(principal: Auth, data: JSONBody[StartConversation], chat: ChatDep, limiter: LimiterDep,
                gateway: GatewayDep) -> dict[str, Any]:
    conv = await chat.start_conversation(principal, bot_id=data.bot_id, user_id=data.user_id)
    out: dict[str, Any] = {"conversation": conversation_json(conv)}
    if data.text:
        if principal.role == "admin":
            raise BadInput("an admin cannot write messages", field="text")
        await charge_message(limiter, gateway, principal)
        import uuid

        posted = await chat.send(principal.tenant_id, conv.id, Sender.of(principal), data.text,
                                 client_msg_id=data.client_msg_id or str(uuid.uuid4()), principal=principal)
        out["message"] = message_json(posted.message)
    return out


@get("/v1/conversations")
async def list_mine(principal: Auth, chat: ChatDep, db: DbDep, status: FromQuery[str | None] = None,
                    limit: FromQuery[int] = 50, label: FromQuery[str | None] = None) -> dict[str, Any]:
    """The caller's conversations; ``label`` (a label's id, agents and admins) keeps those carrying it."""
    if status is not None and status not in set(Status):
        raise BadInput(f"status must be one of {', '.join(Status)}", field="status")
    if not 1 <= limit <= 200:
        raise BadInput("limit must be 1..200", field="limit")
    if label is not None:
        if principal.role == "user":
            raise Forbidden("the label filter is for agents and admins")
        try:
            await get_label(db, principal, label)
        except NotFound:
            raise BadInput("no such label", field="label") from None
    convs = await chat.list_conversations(principal, status=status, limit=limit, label_id=label)
    return {"conversations": [conversation_json(c) for c in convs]}


@get("/v1/conversations/{conversation_id:str}/messages")
async def history(principal: Auth, conversation_id: FromPath[str], settings: SettingsDep, chat: ChatDep,
                  gateway: GatewayDep, after_seq: FromQuery[int] = 0, limit: FromQuery[int] = 100) -> dict[str, Any]:
    """Oldest first; each message as it is now (``edited_at``, ``deleted``) with its ``reactions``."""
    cap = settings.history_page_max
    if not 1 <= limit <= cap:
        raise BadInput(f"limit must be 1..{cap}", field="limit")
    msgs = await chat.history(principal, conversation_id, after_seq=after_seq, limit=limit)
    reactions = await gateway.reactions.summaries(principal, [m.id for m in msgs])
    return {"messages": [{**message_json(m), **({"reactions": reactions[m.id]} if m.id in reactions else {})}
                         for m in msgs],
            "next_after_seq": msgs[-1].seq if msgs else after_seq}


@post("/v1/conversations/{conversation_id:str}/messages", status_code=201)
async def post_message(principal: Auth, conversation_id: FromPath[str], data: JSONBody[PostMessage], chat: ChatDep,
                       limiter: LimiterDep, gateway: GatewayDep) -> dict[str, Any]:
    require(principal, "user", "agent")
    await charge_message(limiter, gateway, principal)
    posted = await chat.post_message(principal.tenant_id, conversation_id, Sender.of(principal), data.text,
                                     client_msg_id=data.client_msg_id, principal=principal,
                                     attachments=data.attachments, reply_to=data.reply_to, rich=data.rich)
    m = posted.message
    await chat.publish(posted)
    return {"client_msg_id": m.client_msg_id, "conversation_id": m.conversation_id, "message_id": m.id,
            "seq": m.seq, "created_at": message_json(m)["created_at"], "duplicate": not posted.created}


async def _status(chat: ChatService, router: Router, principal: Principal, cid: str, action: str,
                  reason: str | None) -> dict[str, Any]:
    conv = await chat.get_conversation(principal, cid)
    if action == "handoff":
        conv = await router.handoff(conv.tenant_id, conv.id, reason=reason or f"{principal.role}_request")
    else:
        conv = await router.agent_action(principal, conv.id, action)
    return {"conversation": conversation_json(conv)}


@post("/v1/conversations/{conversation_id:str}/handoff", status_code=200)
async def handoff(principal: Auth, conversation_id: FromPath[str], chat: ChatDep, router: RouterDep,
                  data: JSONBody[StatusChange | None] = None) -> dict[str, Any]:
    return await _status(chat, router, principal, conversation_id, "handoff", data.reason if data else None)


@post("/v1/conversations/{conversation_id:str}/claim", status_code=200)
async def claim(principal: Auth, conversation_id: FromPath[str], chat: ChatDep,
                router: RouterDep) -> dict[str, Any]:
    require(principal, "agent")
    return await _status(chat, router, principal, conversation_id, "claim", None)


@post("/v1/conversations/{conversation_id:str}/resolve", status_code=200)
async def resolve(principal: Auth, conversation_id: FromPath[str], chat: ChatDep,
                  router: RouterDep) -> dict[str, Any]:
    require(principal, "agent")
    return await _status(chat, router, principal, conversation_id, "resolve", None)


@post("/v1/conversations/{conversation_id:str}/handback", status_code=200)
async def handback(principal: Auth, conversation_id: FromPath[str], chat: ChatDep,
                   router: RouterDep) -> dict[str, Any]:
    require(principal, "agent")
    return await _status(chat, router, principal, conversation_id, "handback", None)


conversation_handlers = [start, list_mine, history, post_message, handoff, claim, resolve, handback]
