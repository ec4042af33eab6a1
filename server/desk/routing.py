"""Where a conversation goes: the team it is routed to (a transfer to a team, or a tenant's routing
rule at handoff), the tenant's routing rules (CRUD and the pure match), and the team members a
queued conversation may be given to. Everything is scoped to one tenant; a team or rule of another
tenant is ``not_found`` like a missing one."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from server.accounts.teams import Team, TeamMember
from server.core.db import Database
from server.core.models import Agent, Conversation, Status, utcnow
from server.desk.models import ConversationRoute, RoutingRule
from server.errors import BadInput, NotFound

__all__ = ["RuleSpec", "assigned_counts", "create_rule", "delete_rule", "due_snoozes", "list_rules", "match_rule",
           "set_snooze", "set_team", "snoozed_until",
           "team_members", "teams_of"]

KINDS = ("topic", "attribute")


async def _route(db: Database, tenant_id: str, conversation_id: str, **fields: Any) -> None:
    """Set fields of the conversation's route row (made on first use)."""
    async with db.write() as s:
        row = await s.get(ConversationRoute, conversation_id)
        if row is None:
            row = ConversationRoute(conversation_id=conversation_id, tenant_id=tenant_id)
        for name, value in fields.items():
            setattr(row, name, value)
        row.updated_at = utcnow()
        s.add(row)


async def set_team(db: Database, tenant_id: str, conversation_id: str, team_id: str | None) -> None:
    """Route the conversation to ``team_id`` (None: to the whole tenant)."""
    await _route(db, tenant_id, conversation_id, team_id=team_id)


async def set_snooze(db: Database, tenant_id: str, conversation_id: str, until: datetime | None) -> None:
    """When the conversation's snooze ends (None: no snooze)."""
    await _route(db, tenant_id, conversation_id, snoozed_until=until)


async def snoozed_until(db: Database, conversation_id: str) -> datetime | None:
    async with db.session() as s:
        row = await s.get(ConversationRoute, conversation_id)
    return row.snoozed_until if row is not None else None


async def due_snoozes(db: Database, now: datetime, limit: int) -> list[tuple[str, str]]:
    """``(tenant_id, conversation_id)`` of the snoozed conversations whose time has come, oldest first."""
    async with db.session() as s:
        rows = (await s.exec(select(ConversationRoute.tenant_id, ConversationRoute.conversation_id)
                             .join(Conversation, col(Conversation.id) == col(ConversationRoute.conversation_id))
                             .where(col(ConversationRoute.snoozed_until).is_not(None),
                                    col(ConversationRoute.snoozed_until) <= now,
                                    Conversation.status == Status.SNOOZED)
                             .order_by(col(ConversationRoute.snoozed_until)).limit(limit))).all()
    return [(str(t), str(c)) for t, c in rows]


async def teams_of(db: Database, tenant_id: str, conversation_ids: Sequence[str]) -> dict[str, str]:
    """The team each of these conversations is routed to (those routed to nobody are left out)."""
    if not conversation_ids:
        return {}
    async with db.session() as s:
        rows = (await s.exec(select(ConversationRoute.conversation_id, ConversationRoute.team_id).where(
            ConversationRoute.tenant_id == tenant_id, col(ConversationRoute.conversation_id).in_(conversation_ids),
            col(ConversationRoute.team_id).is_not(None)))).all()
    return {cid: tid for cid, tid in rows if tid}


async def team_members(db: Database, tenant_id: str, team_ids: Sequence[str]) -> dict[str, set[str]]:
    """The active agents of each team."""
    if not team_ids:
        return {}
    async with db.session() as s:
        rows = (await s.exec(select(TeamMember.team_id, TeamMember.agent_id)
                             .join(Agent, col(Agent.id) == col(TeamMember.agent_id))
                             .where(TeamMember.tenant_id == tenant_id, col(TeamMember.team_id).in_(team_ids),
                                    col(Agent.active)))).all()
    out: dict[str, set[str]] = {t: set() for t in team_ids}
    for team_id, agent_id in rows:
        out[team_id].add(agent_id)
    return out


async def assigned_counts(db: Database, tenant_id: str, agent_ids: Sequence[str]) -> dict[str, int]:
    """How many conversations each of these agents owns now (their load against their capacity)."""
    if not agent_ids:
        return {}
    async with db.session() as s:
        rows = (await s.exec(select(Conversation.assignee_id, func.count()).where(
            Conversation.tenant_id == tenant_id, Conversation.status == Status.ASSIGNED,
            col(Conversation.assignee_id).in_(agent_ids)).group_by(Conversation.assignee_id))).all()
    return {str(a): int(n) for a, n in rows if a}


# ---- routing rules ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleSpec:
    team_id: str
    kind: str
    keyword: str | None = None
    attribute: str | None = None
    value: str | None = None


def _clean(spec: RuleSpec) -> RuleSpec:
    if spec.kind not in KINDS:
        raise BadInput(f"kind must be one of {', '.join(KINDS)}", field="kind")
    if spec.kind == "topic":
        keyword = (spec.keyword or "").strip().lower()
        if not keyword:
            raise BadInput("a topic rule needs a keyword", field="keyword")
        if spec.attribute is not None or spec.value is not None:
            raise BadInput("a topic rule has a keyword only", field="attribute")
        return RuleSpec(spec.team_id, "topic", keyword=keyword)
    attribute = (spec.attribute or "").strip()
    if not attribute:
        raise BadInput("an attribute rule needs an attribute", field="attribute")
    if spec.value is None or not spec.value.strip():
        raise BadInput("an attribute rule needs a value", field="value")
    if spec.keyword is not None:
        raise BadInput("an attribute rule has an attribute and a value only", field="keyword")
    return RuleSpec(spec.team_id, "attribute", attribute=attribute, value=spec.value.strip())


async def list_rules(db: Database, tenant_id: str) -> list[RoutingRule]:
    async with db.session() as s:
        return list((await s.exec(select(RoutingRule).where(RoutingRule.tenant_id == tenant_id)
                                  .order_by(col(RoutingRule.position), col(RoutingRule.created_at)))).all())


async def create_rule(db: Database, tenant_id: str, spec: RuleSpec, *, max_rules: int) -> RoutingRule:
    """A new rule, tried after the existing ones."""
    spec = _clean(spec)
    async with db.write() as s:
        team = await s.get(Team, spec.team_id)
        if team is None or team.tenant_id != tenant_id:
            raise NotFound("no such team")
        n, last = (await s.exec(select(func.count(), func.max(RoutingRule.position)).where(
            RoutingRule.tenant_id == tenant_id))).one()
        if int(n) >= max_rules:
            raise BadInput(f"at most {max_rules} routing rules per tenant")
        rule = RoutingRule(tenant_id=tenant_id, team_id=spec.team_id, kind=spec.kind, keyword=spec.keyword,
                           attribute=spec.attribute, value=spec.value, position=int(last or 0) + 1)
        s.add(rule)
    return rule


async def delete_rule(db: Database, tenant_id: str, rule_id: str) -> None:
    async with db.write() as s:
        rule = await s.get(RoutingRule, rule_id)
        if rule is None or rule.tenant_id != tenant_id:
            raise NotFound("no such routing rule")
        await s.delete(rule)


def match_rule(rules: Sequence[RoutingRule], *, texts: Sequence[str],
               attributes: Mapping[str, Any]) -> RoutingRule | None:
    """The first rule that fits: a topic rule whose keyword is a word (or phrase) of one of
    ``texts`` (the user's recent messages and the handoff reason), case-insensitive; an attribute
    rule whose attribute equals its value (compared as text, case-insensitive)."""
    haystack = [" " + " ".join(_words(t)) + " " for t in texts]
    for rule in rules:
        if rule.kind == "topic" and rule.keyword:
            if _unspaced(rule.keyword):  # Chinese, Japanese: no spaces between words
                if any(rule.keyword.lower() in t.lower() for t in texts):
                    return rule
                continue
            needle = " " + " ".join(_words(rule.keyword)) + " "
            if needle.strip() and any(needle in h for h in haystack):
                return rule
        elif rule.kind == "attribute" and rule.attribute and rule.value is not None:
            have = attributes.get(rule.attribute)
            if have is not None and not isinstance(have, dict | list) and \
                    str(have).strip().lower() == rule.value.strip().lower():
                return rule
    return None


def _words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() else " " for c in text).split()


def _unspaced(text: str) -> bool:
    """Written in a script without spaces between words (CJK ideographs, kana)."""
    return any(0x2E80 <= ord(c) <= 0x9FFF or 0xF900 <= ord(c) <= 0xFAFF for c in text)
