"""CSAT: the end user rates a conversation (1-5 and a comment) once it is resolved, or once the AI agent
has answered in it; the rating keeps who had resolved it (a human agent, or the AI), so the figures split
AI from human. One rating per conversation and kind: rating the same kind again replaces it. The widget's wording is the
tenant's own when it set one, else the server's (settings ``csat_question`` / ``csat_thanks``)."""

from dataclasses import dataclass
from datetime import timedelta

import msgspec
from sqlalchemy import func
from sqlmodel import col, select

from server.accounts.auth import Principal
from server.core.db import Database
from server.core.models import Agent, Conversation, Message, Status, Tenant, utcnow
from server.desk.models import Rating
from server.errors import BadInput, Forbidden, NotFound, NotRateable

__all__ = ["Figures", "Summary", "Wording", "get_rating", "rate", "set_wording", "summary", "wording"]


@dataclass(frozen=True)
class Wording:
    question: str
    thanks: str


class Figures(msgspec.Struct, frozen=True):
    ratings: int
    average: float | None
    satisfied: float | None  # the share of ratings of 4 or 5 (the usual CSAT %)
    distribution: dict[str, int]  # "1".."5" -> count


class AgentFigures(msgspec.Struct, frozen=True):
    agent_id: str
    name: str
    ratings: int
    average: float


@dataclass(frozen=True)
class Summary:
    days: int
    ai: Figures
    human: Figures
    by_agent: list[AgentFigures]
    recent: list[Rating]


async def _conversation(db: Database, p: Principal, conversation_id: str) -> Conversation:
    async with db.session() as s:
        conv = await s.get(Conversation, conversation_id)
    visible = conv is not None and conv.tenant_id == p.tenant_id and (p.role != "user" or conv.user_id == p.id)
    if conv is None or not visible:
        raise NotFound("conversation not found")
    return conv


async def _resolver(db: Database, conv: Conversation) -> tuple[str, str | None]:
    """Who resolved the conversation as it stands: the human agent, or the AI once it has answered."""
    if conv.status == Status.RESOLVED.value:
        return "human", conv.last_agent_id
    if conv.status == Status.BOT.value:
        async with db.session() as s:
            answered = (await s.exec(select(Message.id).where(
                Message.conversation_id == conv.id, Message.sender_kind == "bot").limit(1))).first()
        if answered is not None:
            return "ai", conv.bot_id
    raise NotRateable("a conversation is rated once it is resolved, or once the AI agent has answered in it")


async def rate(db: Database, p: Principal, conversation_id: str, score: int, comment: str | None, *,
               max_comment_chars: int) -> Rating:
    """The conversation's end user rates it (again: the new rating replaces the old)."""
    if p.role != "user":
        raise Forbidden("a conversation is rated by its end user")
    if not 1 <= score <= 5:
        raise BadInput("score must be 1 to 5", field="score")
    comment = (comment or "").strip() or None
    if comment is not None and len(comment) > max_comment_chars:
        raise BadInput(f"comment is over {max_comment_chars} characters", field="comment")
    conv = await _conversation(db, p, conversation_id)
    kind, resolver_id = await _resolver(db, conv)
    now = utcnow()
    async with db.session() as s:
        row = (await s.exec(select(Rating).where(Rating.conversation_id == conv.id,
                                                 Rating.resolver_kind == kind))).first()
        if row is None:
            row = Rating(tenant_id=conv.tenant_id, conversation_id=conv.id, user_id=conv.user_id, score=score,
                         comment=comment, resolver_kind=kind, resolver_id=resolver_id, created_at=now, updated_at=now)
        else:
            row.score, row.comment, row.resolver_id, row.updated_at = score, comment, resolver_id, now
        s.add(row)
        await s.commit()
        await s.refresh(row)
    return row


async def get_rating(db: Database, p: Principal, conversation_id: str) -> Rating:
    """The conversation's latest rating: its end user, the tenant's agents and admins; none is ``not_found``."""
    conv = await _conversation(db, p, conversation_id)
    async with db.session() as s:
        row = (await s.exec(select(Rating).where(Rating.conversation_id == conv.id)
                            .order_by(col(Rating.updated_at).desc()))).first()
    if row is None:
        raise NotFound("not rated")
    return row


async def wording(db: Database, tenant_id: str, default: Wording) -> Wording:
    async with db.session() as s:
        t = await s.get(Tenant, tenant_id)
    if t is None:
        return default
    return Wording(question=t.csat_question or default.question, thanks=t.csat_thanks or default.thanks)


async def set_wording(db: Database, p: Principal, question: str | None, thanks: str | None) -> None:
    """An admin sets the tenant's wording; None or blank goes back to the server's."""
    if p.role != "admin":
        raise Forbidden("the rating's wording is set by the tenant's admins")
    async with db.session() as s:
        t = await s.get(Tenant, p.tenant_id)
        if t is None:
            raise NotFound("tenant not found")
        t.csat_question = (question or "").strip() or None
        t.csat_thanks = (thanks or "").strip() or None
        s.add(t)
        await s.commit()


def _figures(counts: dict[int, int]) -> Figures:
    n = sum(counts.values())
    dist = {str(k): counts.get(k, 0) for k in range(1, 6)}
    if n == 0:
        return Figures(0, None, None, dist)
    avg = sum(k * v for k, v in counts.items()) / n
    return Figures(n, round(avg, 2), round((counts.get(4, 0) + counts.get(5, 0)) / n, 3), dist)


async def summary(db: Database, p: Principal, *, days: int, recent: int = 20) -> Summary:
    """The tenant's ratings of the last ``days`` days, AI beside human, by agent, and the latest comments."""
    if p.role != "admin":
        raise Forbidden("CSAT figures are for the tenant's admins")
    if not 1 <= days <= 3650:
        raise BadInput("days must be 1 to 3650", field="days")
    since = utcnow() - timedelta(days=days)
    scope = (Rating.tenant_id == p.tenant_id, col(Rating.updated_at) >= since)
    async with db.session() as s:
        per = (await s.exec(select(Rating.resolver_kind, Rating.score, func.count())
                            .where(*scope).group_by(col(Rating.resolver_kind), col(Rating.score)))).all()
        agents = (await s.exec(
            select(Rating.resolver_id, Agent.name, func.count(), func.avg(Rating.score))
            .join(Agent, col(Agent.id) == col(Rating.resolver_id))
            .where(*scope, Rating.resolver_kind == "human", Agent.tenant_id == p.tenant_id)
            .group_by(Rating.resolver_id, Agent.name).order_by(func.count().desc()))).all()
        latest = (await s.exec(select(Rating).where(*scope).order_by(col(Rating.updated_at).desc())
                               .limit(recent))).all()
    counts: dict[str, dict[int, int]] = {"ai": {}, "human": {}}
    for kind, score, n in per:
        counts.setdefault(kind, {})[int(score)] = int(n)
    return Summary(days=days, ai=_figures(counts["ai"]), human=_figures(counts["human"]),
                   by_agent=[AgentFigures(agent_id=str(a), name=str(name), ratings=int(n), average=round(float(avg), 2))
                             for a, name, n, avg in agents],
                   recent=list(latest))

