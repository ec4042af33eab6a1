"""Bots (admin) and copilot suggestions (agents)."""

from typing import Any

import msgspec
from litestar import get, patch, post
from litestar.params import FromPath, JSONBody
from sqlmodel import col, select

from bots.config import HandoffSettings
from bots.copilot import suggest
from bots.errors import BotError
from server.accounts.auth import Principal
from server.agent.runner import _turn, tenant_canary
from server.api.deps import Auth, ChatDep, DbDep, LlmDep, RetrieverDep, SettingsDep, require
from server.core.db import Database
from server.core.models import Bot, KnowledgeBase, Message, Tenant
from server.errors import BadInput, NotFound

__all__ = ["bot_handlers"]


class BotBody(msgspec.Struct, forbid_unknown_fields=True):
    name: str | None = None
    knowledge_base_id: str | None = None
    persona: str | None = None
    handoff: dict[str, Any] | None = None
    is_default: bool | None = None


def _bot_json(b: Bot) -> dict[str, Any]:
    return {"id": b.id, "name": b.name, "knowledge_base_id": b.knowledge_base_id, "persona": b.persona,
            "handoff": b.handoff, "is_default": b.is_default}


async def _apply(db: Database, p: Principal, bot: Bot, data: JSONBody[BotBody]) -> None:
    if data.name is not None:
        if not data.name.strip() or len(data.name) > 200:
            raise BadInput("name must be 1..200 characters", field="name")
        bot.name = data.name
    if data.knowledge_base_id is not None:
        async with db.session() as s:
            kb = await s.get(KnowledgeBase, data.knowledge_base_id)
        if kb is None or kb.tenant_id != p.tenant_id:
            raise BadInput("no such knowledge base", field="knowledge_base_id")
        bot.knowledge_base_id = kb.id
    if data.persona is not None:
        if len(data.persona) > 4000:
            raise BadInput("persona must be at most 4000 characters", field="persona")
        bot.persona = data.persona
    if data.handoff is not None:
        try:
            bot.handoff = HandoffSettings.from_dict(data.handoff).to_dict()
        except BotError as exc:
            raise BadInput(exc.detail, field="handoff") from None
    if data.is_default is not None:
        bot.is_default = data.is_default


@post("/v1/bots", status_code=201)
async def create_bot(principal: Auth, data: JSONBody[BotBody], db: DbDep) -> dict[str, Any]:
    require(principal, "admin")
    if not data.name:
        raise BadInput("name is required", field="name")
    bot = Bot(tenant_id=principal.tenant_id, name=data.name)
    await _apply(db, principal, bot, data)
    async with db.write() as s:
        if bot.is_default:
            for other in (await s.exec(select(Bot).where(Bot.tenant_id == principal.tenant_id))).all():
                other.is_default = False
                s.add(other)
        s.add(bot)
    return _bot_json(bot)


@get("/v1/bots")
async def list_bots(principal: Auth, db: DbDep) -> dict[str, Any]:
    require(principal, "admin")
    async with db.session() as s:
        bots = (await s.exec(select(Bot).where(Bot.tenant_id == principal.tenant_id))).all()
    return {"bots": [_bot_json(b) for b in bots]}


@patch("/v1/bots/{bot_id:str}")
async def update_bot(principal: Auth, bot_id: FromPath[str],
                     data: JSONBody[BotBody], db: DbDep) -> dict[str, Any]:
    require(principal, "admin")
    async with db.session() as s:
        bot = await s.get(Bot, bot_id)
    if bot is None or bot.tenant_id != principal.tenant_id:
        raise NotFound("bot not found")
    await _apply(db, principal, bot, data)
    async with db.write() as s:
        if bot.is_default:
            for other in (await s.exec(select(Bot).where(Bot.tenant_id == principal.tenant_id,
                                                         Bot.id != bot.id))).all():
                other.is_default = False
                s.add(other)
        s.add(bot)
    return _bot_json(bot)


@get("/v1/conversations/{conversation_id:str}/suggestions")
async def suggestions(
    principal: Auth, conversation_id: FromPath[str], db: DbDep, chat: ChatDep, retriever: RetrieverDep, llm: LlmDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    require(principal, "agent")
    conv = await chat.get_conversation(principal, conversation_id)
    async with db.session() as s:
        bot = await s.get(Bot, conv.bot_id) if conv.bot_id else None
        tenant = await s.get(Tenant, conv.tenant_id)
        msgs = list((await s.exec(select(Message).where(Message.conversation_id == conv.id, Message.kind == "text",
                                                        col(Message.deleted_at).is_(None))
                                  .order_by(col(Message.seq).desc()).limit(settings.bot_history_turns))).all())
    kb_id = bot.knowledge_base_id if bot and bot.knowledge_base_id else ""
    if not kb_id:
        return {"drafts": []}
    assert tenant is not None
    drafts = await suggest(retriever, kb_id, [_turn(m) for m in reversed(msgs)], llm, k=settings.suggestion_count,
                           canary=tenant_canary(tenant.signing_secret))
    return {"drafts": [{"text": d.text, "citations": [c.to_dict() for c in d.citations]} for d in drafts]}


bot_handlers = [create_bot, list_bots, update_bot, suggestions]
