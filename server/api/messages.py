"""Changes to sent messages over REST, with the socket's rules and rate limits: edit and
delete-for-everyone (and the audit of both), emoji reactions, and the read marks of a
conversation's participants."""

from typing import Annotated, Any

import msgspec
from litestar import delete, get, patch, put
from litestar.params import FromPath, JSONBody

from server.accounts.auth import Principal
from server.api.deps import Auth, ChatDep, GatewayDep, LimiterDep
from server.chat.receipts import read_marks
from server.chat.service import iso, message_json
from server.core.ratelimit import Charge, Limiter, enforce, user_key
from server.realtime.gateway import Gateway

__all__ = ["message_handlers"]


class EditMessage(msgspec.Struct, forbid_unknown_fields=True):
    # the stored limit is max_text_chars; this only bounds what is parsed
    text: Annotated[str, msgspec.Meta(max_length=100_000)]


async def _charge(limiter: Limiter, gateway: Gateway, p: Principal) -> None:
    """The bucket a socket frame takes from: the user's."""
    await enforce(limiter, Charge(gateway.limits.user_frames, user_key(p.tenant_id, p.role, p.id)),
                  detail="too many changes; slow down")


@patch("/v1/conversations/{conversation_id:str}/messages/{message_id:str}")
async def edit_message(principal: Auth, conversation_id: FromPath[str], message_id: FromPath[str],
                       data: JSONBody[EditMessage], gateway: GatewayDep, limiter: LimiterDep) -> dict[str, Any]:
    """Its sender edits a message within ``message_edit_window_s``: ``{message}`` as it is now;
    every side gets ``message.edited``."""
    await _charge(limiter, gateway, principal)
    m = await gateway.edits.edit(principal, conversation_id, message_id, data.text)
    return {"message": message_json(m)}


@delete("/v1/conversations/{conversation_id:str}/messages/{message_id:str}", status_code=200)
async def delete_message(principal: Auth, conversation_id: FromPath[str], message_id: FromPath[str],
                         gateway: GatewayDep, limiter: LimiterDep) -> dict[str, Any]:
    """Its sender deletes a message for everyone within ``message_edit_window_s``; every side gets
    ``message.deleted`` (the text is kept for the audit only)."""
    await _charge(limiter, gateway, principal)
    m = await gateway.edits.delete(principal, conversation_id, message_id)
    return {"message": message_json(m)}


@get("/v1/conversations/{conversation_id:str}/messages/{message_id:str}/revisions")
async def message_revisions(principal: Auth, conversation_id: FromPath[str], message_id: FromPath[str],
                            gateway: GatewayDep) -> dict[str, Any]:
    """The audit (agents, admins): each earlier text, oldest first, with who changed it and when."""
    revs = await gateway.edits.revisions(principal, conversation_id, message_id)
    return {"revisions": [{"action": r.action, "text": r.text, "actor": {"kind": r.actor_kind, "id": r.actor_id},
                           "created_at": iso(r.created_at), **({"attachments": r.attachments} if r.attachments else {})}
                          for r in revs]}


@put("/v1/conversations/{conversation_id:str}/messages/{message_id:str}/reactions/{emoji:str}", status_code=200)
async def add_reaction(principal: Auth, conversation_id: FromPath[str], message_id: FromPath[str],
                       emoji: FromPath[str], gateway: GatewayDep, limiter: LimiterDep) -> dict[str, Any]:
    """Add the caller's ``emoji`` (URL-encoded, one of ``reaction_emojis``); idempotent."""
    await _charge(limiter, gateway, principal)
    return await gateway.reactions.set(principal, conversation_id, message_id, emoji, active=True)


@delete("/v1/conversations/{conversation_id:str}/messages/{message_id:str}/reactions/{emoji:str}",
        status_code=200)
async def remove_reaction(principal: Auth, conversation_id: FromPath[str], message_id: FromPath[str],
                          emoji: FromPath[str], gateway: GatewayDep, limiter: LimiterDep) -> dict[str, Any]:
    """Take the caller's ``emoji`` off; idempotent."""
    await _charge(limiter, gateway, principal)
    return await gateway.reactions.set(principal, conversation_id, message_id, emoji, active=False)


@get("/v1/conversations/{conversation_id:str}/reads")
async def reads(principal: Auth, conversation_id: FromPath[str], chat: ChatDep) -> dict[str, Any]:
    """How far each participant has read: ``{reads: [{participant: {kind, id}, seq}]}``."""
    return {"reads": await read_marks(chat, principal, conversation_id)}


message_handlers = [edit_message, delete_message, message_revisions, add_reaction, remove_reaction, reads]
