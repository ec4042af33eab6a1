"""Search over a tenant's conversations and messages, for its agents and admins (issue 12 item 7).

The database does the work, behind one function: SQLite through an FTS5 index (``messages_fts``,
kept by triggers, migration 0006) and PostgreSQL through its full-text search (``to_tsvector('simple',
text)`` with a GIN index). Words in a Latin or other spaced script match as words, the last one also
as a prefix ("refun" finds "refund"), every word must occur; a word in a script written without
spaces (Chinese, Japanese, Thai) matches as a substring, since neither database segments it. A
query is never passed through as the engines' own syntax: each word is quoted or bound, so ``NEAR(``,
``"`` or ``:*`` in a query are just characters.

Results are messages, newest first, each with its conversation's status; ``status`` and ``label``
(a label's id) narrow them. Another tenant's messages are never read: the tenant is in every query.
"""

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import Select, column, exists, func, literal_column, select, table, text

from server.accounts.auth import Principal
from server.core.db import Database
from server.core.models import Conversation, Message, Status
from server.desk.models import ConversationLabel
from server.errors import BadInput, Forbidden

__all__ = ["SearchHit", "SearchLimits", "search", "terms_of"]


@dataclass(frozen=True)
class SearchLimits:
    max_query_chars: int
    max_terms: int
    max_results: int


class SearchHit(msgspec.Struct, frozen=True):
    """One message found (the REST answer's ``results`` rows)."""

    conversation_id: str
    status: str
    user_id: str
    assignee_id: str | None
    message_id: str
    seq: int
    sender_kind: str
    sender_name: str | None
    text: str
    created_at: datetime


@dataclass(frozen=True)
class Terms:
    words: tuple[str, ...]  # matched as words by the full-text index
    substrings: tuple[str, ...]  # matched as substrings (unspaced scripts)


# Scripts written without spaces between words: a run of them is matched as a substring.
_UNSPACED = re.compile(r"[\u0e00-\u0eff\u1000-\u109f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
                       r"\uf900-\ufaff\uff66-\uff9f]+")
_WORD = re.compile(r"[^\W_]+")  # letters and digits: "_" is a separator, as for both engines


def terms_of(query: str, limits: SearchLimits) -> Terms:
    """The words and substrings of a query; ``bad_input`` when it has none or too many."""
    q = unicodedata.normalize("NFKC", query).strip()
    if not q:
        raise BadInput("q must not be blank", field="q")
    if len(q) > limits.max_query_chars:
        raise BadInput(f"q is over {limits.max_query_chars} characters", field="q")
    substrings = [m.group(0) for m in _UNSPACED.finditer(q)]
    spaced = _UNSPACED.sub(" ", q)
    words = [w.casefold() for w in _WORD.findall(spaced)]
    words = list(dict.fromkeys(words))
    substrings = list(dict.fromkeys(substrings))
    if not words and not substrings:
        raise BadInput("q has no word to search for", field="q")
    if len(words) + len(substrings) > limits.max_terms:
        raise BadInput(f"q has more than {limits.max_terms} words", field="q")
    return Terms(tuple(words), tuple(substrings))


def _like(s: str) -> str:
    return "%" + s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _fts5_query(words: tuple[str, ...]) -> str:
    """Every word quoted (so the query's own syntax is inert), the last one also as a prefix."""
    parts = ['"' + w.replace('"', '""') + '"' for w in words]
    parts[-1] += "*"
    return " AND ".join(parts)


def _pg_tsquery(words: tuple[str, ...]) -> str:
    """A to_tsquery('simple', ...) text: each word single-quoted (its quotes and backslashes escaped), the
    last one also a prefix."""
    parts = ["'" + w.replace("\\", "\\\\").replace("'", "''") + "'" for w in words]
    parts[-1] += ":*"
    return " & ".join(parts)


_SIMPLE: Any = literal_column("'simple'::regconfig")  # as the index expression has it, so the index is used
_FTS5 = table("messages_fts", column("rowid"))


def _statement(dialect: str, tenant_id: str, terms: Terms, status: str | None, label_id: str | None,
               limit: int) -> Select[Any]:
    m, c = Message.__table__.c, Conversation.__table__.c  # type: ignore[attr-defined]
    q = (select(m.conversation_id, c.status, c.user_id, c.assignee_id, m.id, m.seq, m.sender_kind,
                m.sender_name, m.text, m.created_at)
         .select_from(Message.__table__.join(Conversation.__table__, c.id == m.conversation_id))  # type: ignore[attr-defined]
         .where(m.tenant_id == tenant_id, c.tenant_id == tenant_id))
    if status is not None:
        if status not in {s.value for s in Status}:
            raise BadInput(f"unknown status {status!r}", field="status")
        q = q.where(c.status == status)
    if label_id is not None:
        cl = ConversationLabel.__table__.c  # type: ignore[attr-defined]
        q = q.where(exists().where(cl.conversation_id == c.id, cl.tenant_id == tenant_id, cl.label_id == label_id))
    for sub in terms.substrings:
        q = q.where(m.text.like(_like(sub), escape="\\"))
    if terms.words and dialect == "sqlite":
        q = (q.join(_FTS5, _FTS5.c.rowid == literal_column("messages.rowid"))
             .where(text("messages_fts MATCH :fts").bindparams(fts=_fts5_query(terms.words))))
    elif terms.words:
        q = q.where(func.to_tsvector(_SIMPLE, m.text).op("@@")(func.to_tsquery(_SIMPLE, _pg_tsquery(terms.words))))
    return q.order_by(m.created_at.desc(), m.seq.desc()).limit(limit)


async def search(db: Database, p: Principal, query: str, *, limits: SearchLimits, status: str | None = None,
                 label_id: str | None = None, limit: int | None = None) -> list[SearchHit]:
    """The tenant's messages matching ``query``, newest first (agents and admins)."""
    if p.role not in ("agent", "admin"):
        raise Forbidden("search is for agents and admins")
    n = limits.max_results if limit is None else limit
    if not 1 <= n <= limits.max_results:
        raise BadInput(f"limit must be 1..{limits.max_results}", field="limit")
    terms = terms_of(query, limits)
    stmt = _statement(db.engine.dialect.name, p.tenant_id, terms, status, label_id, n)
    async with db.session() as s:
        conn = await s.connection()
        result = (await conn.execute(stmt)).all()
    return [SearchHit(conversation_id=r[0], status=r[1], user_id=r[2], assignee_id=r[3], message_id=r[4],
                      seq=r[5], sender_kind=r[6], sender_name=r[7], text=r[8], created_at=_aware(r[9]))
            for r in result]


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
