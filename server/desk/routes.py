"""The desk's REST surface (README "The desk"): canned responses, for agents (their own and the
tenant's) and admins (the tenant's); labels, defined by admins and put on conversations by agents."""

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from server.accounts.auth import Principal
from server.core.db import Database
from server.core.settings import Settings
from server.desk import canned, csat, labels, search
from server.desk.models import CannedResponse, Label, Rating

__all__ = ["desk_handlers"]

PrincipalDep = NamedDependency[Principal]
DbDep = NamedDependency[Database]
SettingsDep = NamedDependency[Settings]

Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Shortcut = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
# the stored limit is the setting canned_response_max_chars; this only bounds what is parsed
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=100_000)]


class CannedIn(msgspec.Struct, forbid_unknown_fields=True):
    title: Title
    shortcut: Shortcut
    text: Text


class CannedPatch(msgspec.Struct, forbid_unknown_fields=True):
    title: Title | None = None
    shortcut: Shortcut | None = None
    text: Text | None = None


class CannedOut(msgspec.Struct):
    id: str
    scope: str  # "tenant" or "agent"
    agent_id: str | None
    title: str
    shortcut: str
    text: str
    created_at: datetime
    updated_at: datetime


class CannedList(msgspec.Struct):
    canned_responses: list[CannedOut]


class Rendered(msgspec.Struct):
    id: str
    conversation_id: str
    text: str


def _out(r: CannedResponse) -> CannedOut:
    return CannedOut(id=r.id, scope="tenant" if r.agent_id is None else "agent", agent_id=r.agent_id,
                     title=r.title, shortcut=r.shortcut, text=r.text, created_at=r.created_at,
                     updated_at=r.updated_at)


def _limits(settings: Settings) -> canned.CannedLimits:
    return canned.CannedLimits(max_per_owner=settings.max_canned_responses_per_owner,
                               max_chars=settings.canned_response_max_chars)


@get("/v1/canned-responses")
async def list_canned(principal: PrincipalDep, db: DbDep) -> CannedList:
    """An agent's own and the tenant's saved replies (an admin: the tenant's)."""
    return CannedList(canned_responses=[_out(r) for r in await canned.list_for(db, principal)])


@post("/v1/canned-responses", status_code=201)
async def post_canned(principal: PrincipalDep, db: DbDep, settings: SettingsDep,
                      data: JSONBody[CannedIn]) -> CannedOut:
    """An admin creates one of the tenant's; an agent one of their own."""
    return _out(await canned.create(db, principal, title=data.title, shortcut=data.shortcut, text=data.text,
                                    limits=_limits(settings)))


@get("/v1/canned-responses/{response_id:str}")
async def get_canned(principal: PrincipalDep, db: DbDep, response_id: FromPath[str]) -> CannedOut:
    return _out(await canned.get(db, principal, response_id))


@patch("/v1/canned-responses/{response_id:str}")
async def patch_canned(principal: PrincipalDep, db: DbDep, settings: SettingsDep, response_id: FromPath[str],
                       data: JSONBody[CannedPatch]) -> CannedOut:
    return _out(await canned.update(db, principal, response_id, title=data.title, shortcut=data.shortcut,
                                    text=data.text, limits=_limits(settings)))


@delete("/v1/canned-responses/{response_id:str}", status_code=204)
async def delete_canned(principal: PrincipalDep, db: DbDep, response_id: FromPath[str]) -> None:
    await canned.delete(db, principal, response_id)


@get("/v1/canned-responses/{response_id:str}/render")
async def render_canned(principal: PrincipalDep, db: DbDep, response_id: FromPath[str],
                        conversation_id: FromQuery[str]) -> Rendered:
    """The text with ``{{user.name}}``, ``{{agent.name}}`` and ``{{conversation.id}}`` filled in for a
    conversation of the tenant (agents only)."""
    text = await canned.render_for(db, principal, response_id, conversation_id)
    return Rendered(id=response_id, conversation_id=conversation_id, text=text)


desk_handlers: list[Any] = [list_canned, post_canned, get_canned, patch_canned, delete_canned, render_canned]


LabelName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Colour = Annotated[str, msgspec.Meta(max_length=7)]


class LabelIn(msgspec.Struct, forbid_unknown_fields=True):
    name: LabelName
    colour: Colour = "#6b7280"


class LabelPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: LabelName | None = None
    colour: Colour | None = None


class LabelOut(msgspec.Struct):
    id: str
    name: str
    colour: str


class LabelList(msgspec.Struct):
    labels: list[LabelOut]


def _label(x: Label) -> LabelOut:
    return LabelOut(id=x.id, name=x.name, colour=x.colour)


def _labels(xs: list[Label]) -> LabelList:
    return LabelList(labels=[_label(x) for x in xs])


@get("/v1/labels")
async def get_labels(principal: PrincipalDep, db: DbDep) -> LabelList:
    """The tenant's labels (agents and admins)."""
    return _labels(await labels.list_labels(db, principal))


@post("/v1/labels", status_code=201)
async def post_label(principal: PrincipalDep, db: DbDep, settings: SettingsDep, data: JSONBody[LabelIn]) -> LabelOut:
    """Define a label (admins); ``colour`` is ``#rrggbb``."""
    return _label(await labels.create_label(db, principal, data.name, data.colour,
                                            max_labels=settings.max_labels_per_tenant))


@patch("/v1/labels/{label_id:str}")
async def patch_label(principal: PrincipalDep, db: DbDep, label_id: FromPath[str],
                      data: JSONBody[LabelPatch]) -> LabelOut:
    return _label(await labels.update_label(db, principal, label_id, data.name, data.colour))


@delete("/v1/labels/{label_id:str}", status_code=204)
async def delete_label(principal: PrincipalDep, db: DbDep, label_id: FromPath[str]) -> None:
    """Delete a label; it comes off every conversation."""
    await labels.delete_label(db, principal, label_id)


@get("/v1/conversations/{conversation_id:str}/labels")
async def get_conversation_labels(principal: PrincipalDep, db: DbDep, conversation_id: FromPath[str]) -> LabelList:
    return _labels(await labels.labels_of(db, principal, conversation_id))


@put("/v1/conversations/{conversation_id:str}/labels/{label_id:str}", status_code=200)
async def put_conversation_label(principal: PrincipalDep, db: DbDep, conversation_id: FromPath[str],
                                 label_id: FromPath[str]) -> LabelList:
    """Put a label on a conversation (agents; idempotent). Answers the conversation's labels."""
    return _labels(await labels.add_to_conversation(db, principal, conversation_id, label_id))


@delete("/v1/conversations/{conversation_id:str}/labels/{label_id:str}", status_code=200)
async def delete_conversation_label(principal: PrincipalDep, db: DbDep, conversation_id: FromPath[str],
                                    label_id: FromPath[str]) -> LabelList:
    """Take a label off a conversation (agents). Answers the conversation's labels."""
    return _labels(await labels.remove_from_conversation(db, principal, conversation_id, label_id))


desk_handlers += [get_labels, post_label, patch_label, delete_label, get_conversation_labels,
                  put_conversation_label, delete_conversation_label]


class SearchResults(msgspec.Struct):
    results: list[search.SearchHit]


@get("/v1/search")
async def search_messages(principal: PrincipalDep, db: DbDep, settings: SettingsDep, q: FromQuery[str],
                          status: FromQuery[str | None] = None, label: FromQuery[str | None] = None,
                          limit: FromQuery[int | None] = None) -> SearchResults:
    """The tenant's messages matching ``q``, newest first (agents and admins). Every word must occur (the
    last also as a prefix); Chinese and other unspaced text matches as a substring. ``status`` and
    ``label`` (a label's id) narrow the results to conversations in that status or carrying that label."""
    if label is not None:
        await labels.get_label(db, principal, label)
    limits = search.SearchLimits(max_query_chars=settings.search_max_query_chars,
                                 max_terms=settings.search_max_terms, max_results=settings.search_max_results)
    hits = await search.search(db, principal, q, limits=limits, status=status, label_id=label, limit=limit)
    return SearchResults(results=hits)


desk_handlers.append(search_messages)


Comment = Annotated[str, msgspec.Meta(max_length=100_000)]  # the stored limit is csat_comment_max_chars
Wording = Annotated[str, msgspec.Meta(max_length=300)]


class RatingIn(msgspec.Struct, forbid_unknown_fields=True):
    score: int
    comment: Comment | None = None


class RatingOut(msgspec.Struct):
    conversation_id: str
    score: int
    comment: str | None
    resolver_kind: str  # "human" or "ai"
    resolver_id: str | None
    created_at: datetime
    updated_at: datetime


class WordingIn(msgspec.Struct, forbid_unknown_fields=True):
    question: Wording | None = None
    thanks: Wording | None = None


class WordingOut(msgspec.Struct):
    question: str
    thanks: str


def _rating(r: Rating) -> RatingOut:
    return RatingOut(conversation_id=r.conversation_id, score=r.score, comment=r.comment,
                     resolver_kind=r.resolver_kind, resolver_id=r.resolver_id, created_at=r.created_at,
                     updated_at=r.updated_at)


def _default_wording(settings: Settings) -> csat.Wording:
    return csat.Wording(question=settings.csat_question, thanks=settings.csat_thanks)


@put("/v1/conversations/{conversation_id:str}/rating", status_code=200)
async def put_rating(principal: PrincipalDep, db: DbDep, settings: SettingsDep, conversation_id: FromPath[str],
                     data: JSONBody[RatingIn]) -> RatingOut:
    """The conversation's end user rates it, 1-5 with an optional comment, once it is resolved or the AI
    agent has answered in it (else 409 ``not_rateable``). The AI's answers and a person's resolution are
    rated apart (``resolver_kind``); rating the same again replaces that rating."""
    return _rating(await csat.rate(db, principal, conversation_id, data.score, data.comment,
                                   max_comment_chars=settings.csat_comment_max_chars))


@get("/v1/conversations/{conversation_id:str}/rating")
async def get_rating(principal: PrincipalDep, db: DbDep, conversation_id: FromPath[str]) -> RatingOut:
    """The latest rating (its end user, the tenant's agents and admins); 404 when not rated."""
    return _rating(await csat.get_rating(db, principal, conversation_id))


@get("/v1/csat/wording")
async def get_wording(principal: PrincipalDep, db: DbDep, settings: SettingsDep) -> WordingOut:
    """The rating question and thanks the widget shows (the tenant's own, or the server's)."""
    w = await csat.wording(db, principal.tenant_id, _default_wording(settings))
    return WordingOut(question=w.question, thanks=w.thanks)


@put("/v1/csat/wording", status_code=200)
async def put_wording(principal: PrincipalDep, db: DbDep, settings: SettingsDep,
                      data: JSONBody[WordingIn]) -> WordingOut:
    """An admin sets the tenant's wording; a blank or missing field goes back to the server's."""
    await csat.set_wording(db, principal, data.question, data.thanks)
    w = await csat.wording(db, principal.tenant_id, _default_wording(settings))
    return WordingOut(question=w.question, thanks=w.thanks)


class CsatOut(msgspec.Struct):
    days: int
    ai: csat.Figures
    human: csat.Figures
    by_agent: list[csat.AgentFigures]
    recent: list[RatingOut]


@get("/v1/admin/csat")
async def get_csat(principal: PrincipalDep, db: DbDep, days: FromQuery[int] = 30) -> CsatOut:
    """The tenant's CSAT of the last ``days`` days: AI beside human (ratings, average, ``satisfied`` = the
    share of 4 and 5, distribution), by agent, and the latest ratings with their comments."""
    s = await csat.summary(db, principal, days=days)
    return CsatOut(days=s.days, ai=s.ai, human=s.human, by_agent=s.by_agent, recent=[_rating(r) for r in s.recent])


desk_handlers += [put_rating, get_rating, get_wording, put_wording, get_csat]
