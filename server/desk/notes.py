"""Private notes' @mentions: reading ``@name`` / ``@email`` out of a note, resolving them to active
agents of the note's tenant (nobody of another tenant is ever found), storing who was mentioned
(idempotent per note and agent) with the push engine's outbox row in the same transaction, and an
agent's list of their mentions. The note itself is a ``note`` message, stored by the chat service."""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import col, select

from server.core.db import Database
from server.core.models import Agent, Message, OutboxRow, utcnow
from server.desk.models import NoteMention
from server.errors import NotFound

__all__ = ["MentionPush", "Resolved", "agent_push_id", "list_mentions", "mark_read", "mention_tokens",
           "record_mentions", "resolve_mentions", "unread_count"]

# ``@ann@example.com`` (an email) or ``@ann`` / ``@ann.lee`` / ``@Ann_Lee`` (a name, spaces
# written as ``.``, ``_`` or ``-``, or left out). A ``@`` inside a word (``ann@x.io``) is no mention.
_MENTION = re.compile(r"(?<![\w@.])@([\w.+-]+@[\w-]+(?:\.[\w-]+)+|[\w][\w.-]*)", re.UNICODE)
_SEPARATORS = re.compile(r"[\s._-]+")


def agent_push_id(agent_id: str) -> str:
    """The push engine's recipient id for an agent's own devices (end users are their ``sub``)."""
    return f"agent:{agent_id}"


def mention_tokens(text: str, limit: int) -> list[str]:
    """The mentions written in ``text``, lower-cased, first occurrence first, at most ``limit``."""
    out: list[str] = []
    for m in _MENTION.finditer(text):
        token = m.group(1).rstrip(".-").lower()
        if token and token not in out:
            out.append(token)
            if len(out) >= limit:
                break
    return out


def _squash(name: str) -> str:
    return _SEPARATORS.sub("", name.lower())


@dataclass(frozen=True)
class Resolved:
    agents: list[Agent]
    unresolved: list[str]


def resolve_mentions(tokens: Sequence[str], agents: Sequence[Agent]) -> Resolved:
    """Each token to one agent: the email, else the whole name (separators ignored), else a first
    name that only one agent has. A token that fits nobody, or several, stays unresolved."""
    by_email = {a.email.lower(): a for a in agents}
    by_name: dict[str, list[Agent]] = {}
    by_first: dict[str, list[Agent]] = {}
    for a in agents:
        by_name.setdefault(_squash(a.name), []).append(a)
        first = a.name.split()[0].lower() if a.name.split() else ""
        by_first.setdefault(first, []).append(a)
    found: list[Agent] = []
    unresolved: list[str] = []
    for t in tokens:
        hit = by_email.get(t)
        if hit is None:
            named = by_name.get(_squash(t)) or by_first.get(t) or []
            hit = named[0] if len(named) == 1 else None
        if hit is None:
            unresolved.append(t)
        elif hit not in found:
            found.append(hit)
    return Resolved(found, unresolved)


async def active_agents(db: Database, tenant_id: str) -> list[Agent]:
    async with db.session() as s:
        return list((await s.exec(select(Agent).where(Agent.tenant_id == tenant_id, col(Agent.active))
                                  .order_by(col(Agent.created_at)))).all())


@dataclass(frozen=True)
class MentionPush:
    """What the push row says of a mention."""

    conversation_id: str
    message_id: str
    seq: int
    author_name: str
    text: str


async def record_mentions(db: Database, note: Message, agents: Sequence[Agent], author_id: str,
                          push: MentionPush) -> list[str]:
    """Store the mentions of ``note`` not stored yet, each with its push row (topic ``push``, kind
    ``desk.mention``) in the same transaction. Answers the ids of the agents newly mentioned."""
    now = utcnow()
    fresh: list[str] = []
    async with db.write() as s:
        have = set((await s.exec(select(NoteMention.agent_id).where(
            NoteMention.message_id == note.id))).all())
        for a in agents:
            if a.id in have or a.tenant_id != note.tenant_id or a.id == author_id:
                continue
            s.add(NoteMention(message_id=note.id, agent_id=a.id, tenant_id=note.tenant_id,
                              conversation_id=note.conversation_id, author_id=author_id, created_at=now))
            s.add(OutboxRow(tenant_id=note.tenant_id, topic="push", created_at=now, available_at=now, payload={
                "kind": "desk.mention", "agent_id": a.id, "conversation_id": push.conversation_id,
                "message_id": push.message_id, "seq": push.seq, "author_name": push.author_name,
                "text": push.text[:200]}))
            fresh.append(a.id)
    return fresh


@dataclass(frozen=True)
class MentionView:
    mention: NoteMention
    message: Message


async def list_mentions(db: Database, tenant_id: str, agent_id: str, *, unread_only: bool,
                        limit: int) -> list[MentionView]:
    """An agent's mentions, newest first, each with its note."""
    q = (select(NoteMention, Message).join(Message, col(Message.id) == col(NoteMention.message_id))
         .where(NoteMention.tenant_id == tenant_id, NoteMention.agent_id == agent_id))
    if unread_only:
        q = q.where(col(NoteMention.read_at).is_(None))
    q = q.order_by(col(NoteMention.created_at).desc(), col(NoteMention.message_id)).limit(limit)
    async with db.session() as s:
        return [MentionView(m, msg) for m, msg in (await s.exec(q)).all()]


async def unread_count(db: Database, tenant_id: str, agent_id: str) -> int:
    async with db.session() as s:
        return int((await s.exec(select(func.count()).select_from(NoteMention).where(
            NoteMention.tenant_id == tenant_id, NoteMention.agent_id == agent_id,
            col(NoteMention.read_at).is_(None)))).one())


async def mark_read(db: Database, tenant_id: str, agent_id: str, message_id: str) -> datetime:
    """The agent has seen this mention (another agent's, or another tenant's, looks missing)."""
    async with db.write() as s:
        row = await s.get(NoteMention, (message_id, agent_id))
        if row is None or row.tenant_id != tenant_id:
            raise NotFound("mention not found")
        if row.read_at is None:
            row.read_at = utcnow()
            s.add(row)
        return row.read_at
