"""The conversation state machine: who may move a conversation where, and what must happen
when it moves. ``transition`` is pure: it reads a snapshot and returns a :class:`Change` whose
side effects (the system message, the queue republish, the push event, who must follow which
topic, whether the AI agent must stop, whether waiting conversations are offered) are data.
:meth:`server.chat.service.ChatService.apply` carries a ``Change`` out in one transaction.

    bot ──handoff──▶ queued ──claim/write──▶ assigned ──resolve──▶ resolved
     ▲                  │                       │                     │
     └────handback──────┴───────────────────────┘◀──── user writes ───┘ (reopen)

A transfer moves an open conversation to another agent (``assigned``) or back to ``queued`` for a
team, with a note for the agents.
"""

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from server.core.models import Status
from server.errors import Forbidden

__all__ = [
    "OPEN_STATUSES",
    "Action",
    "Actor",
    "ActorKind",
    "Change",
    "ConversationState",
    "Follow",
    "PushEvent",
    "Status",
    "TransitionRefused",
    "transition",
]


#: A conversation someone is still working on (the user's sockets follow it, presence reaches it).
OPEN_STATUSES: tuple[Status, ...] = (Status.BOT, Status.QUEUED, Status.ASSIGNED, Status.SNOOZED)
#: A human agent owns it (a snoozed conversation is still its agent's).
_OWNED = (Status.ASSIGNED, Status.SNOOZED)


class Action(StrEnum):
    HANDOFF = "handoff"  # to the queue of human agents
    CLAIM = "claim"  # an agent takes it
    RESOLVE = "resolve"
    HANDBACK = "handback"  # back to the AI agent
    WRITE = "write"  # a text message: an agent takes an unowned conversation, a user reopens one
    TRANSFER = "transfer"  # to another agent (``target``), or back to the queue for a team (no target)
    SNOOZE = "snooze"  # its agent puts an assigned conversation aside
    WAKE = "wake"  # a snoozed conversation is back with its agent (the time came, or they took it up)


class ActorKind(StrEnum):
    USER = "user"
    AGENT = "agent"
    BOT = "bot"
    SYSTEM = "system"  # the router, an admin, the server itself


@dataclass(frozen=True, slots=True)
class Actor:
    kind: ActorKind
    id: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ConversationState:
    """What the state machine reads of a conversation (and of its tenant)."""

    id: str
    tenant_id: str
    user_id: str
    status: Status
    assignee_id: str | None = None
    last_agent_id: str | None = None
    resolved_at: datetime | None = None
    handoff_reason: str | None = None
    reopen_cooldown_s: int = 0


@dataclass(frozen=True, slots=True)
class PushEvent:
    """An event for the push engine's behaviour stream, written to the outbox with the change."""

    name: str
    properties: dict[str, str | None]


@dataclass(frozen=True, slots=True)
class Follow:
    """Every live socket of one principal must follow a conversation's topic."""

    role: str  # "user": the conversation topic; "agent": the agent topic
    principal_id: str


@dataclass(frozen=True, slots=True)
class Change:
    """The outcome of one transition. ``changed`` is False for a repeat that changes nothing
    (a second handoff, a claim by the owner): then nothing is written or announced."""

    before: Status
    status: Status
    assignee_id: str | None
    last_agent_id: str | None
    changed: bool = False
    resolved_at: datetime | None = None
    queued_at: datetime | None = None  # set when the conversation enters the queue
    handoff_reason: str | None = None
    clear_bot_offer: bool = False
    system_text: str | None = None  # a system message, in the same transaction
    note_text: str | None = None  # a note for the agents (by the actor), in the same transaction
    push: PushEvent | None = None
    follow: tuple[Follow, ...] = field(default_factory=tuple)
    republish_queue: bool = False  # places in the queue moved
    offer_waiting: bool = False  # an agent may have free capacity now
    summarize: bool = False  # the agents want a handoff summary
    stop_bot: bool = False  # whatever the AI agent streams into it stops


class TransitionRefused(Forbidden):
    """The actor may not do this to the conversation in its present state."""


def transition(conv: ConversationState, action: Action, actor: Actor, now: datetime, *,
               reason: str | None = None, notice: str | None = None, target: Actor | None = None,
               comment: str | None = None) -> Change:
    """The one place that decides a conversation's next state. ``reason`` is a handoff's reason
    code; ``notice`` the system message a handoff posts (the AI agent's words to the user);
    ``target`` the agent a transfer goes to (none: back to the queue) and ``comment`` its note."""
    match action:
        case Action.HANDOFF:
            change = _handoff(conv, now, reason, notice)
        case Action.CLAIM:
            change = _claim(conv, actor)
        case Action.RESOLVE:
            change = _resolve(conv, actor, now)
        case Action.HANDBACK:
            change = _handback(conv, actor)
        case Action.WRITE:
            change = _write(conv, actor, now)
        case Action.TRANSFER:
            change = _transfer(conv, actor, now, target, comment)
        case Action.SNOOZE:
            change = _snooze(conv, actor)
        case Action.WAKE:
            change = _wake(conv, actor)
        case _:
            raise ValueError(f"unknown action {action!r}")
    if not change.changed:
        return change
    # The user's devices follow their conversation whatever it became (a reopened one too).
    return replace(change, follow=(Follow("user", conv.user_id), *change.follow))


def _same(conv: ConversationState) -> Change:
    return Change(before=conv.status, status=conv.status, assignee_id=conv.assignee_id,
                  last_agent_id=conv.last_agent_id, resolved_at=conv.resolved_at,
                  handoff_reason=conv.handoff_reason)


def _event(conv: ConversationState, name: str, status: Status, reason: str | None) -> PushEvent:
    return PushEvent(name, {"conversation_id": conv.id, "status": str(status), "reason": reason})


def _agent_only(actor: Actor) -> None:
    if actor.kind is not ActorKind.AGENT:
        raise TransitionRefused("only agents can do this")


def _owner_only(conv: ConversationState, actor: Actor) -> None:
    if conv.status in _OWNED and conv.assignee_id != actor.id:
        raise TransitionRefused("another agent owns this conversation")


def _handoff(conv: ConversationState, now: datetime, reason: str | None, notice: str | None) -> Change:
    if conv.status in (Status.QUEUED, *_OWNED):
        return _same(conv)  # one handoff per decision: repeating it changes nothing (a human owns it)
    why = (reason or "requested")[:64]
    return Change(before=conv.status, status=Status.QUEUED, assignee_id=None, last_agent_id=conv.last_agent_id,
                  changed=True, resolved_at=conv.resolved_at, queued_at=now, handoff_reason=why,
                  system_text=notice, push=_event(conv, "conversation.handoff", Status.QUEUED, why),
                  republish_queue=False, offer_waiting=True, summarize=True, stop_bot=True)


def _taken(conv: ConversationState, actor: Actor, text: str | None) -> Change:
    return Change(before=conv.status, status=Status.ASSIGNED, assignee_id=actor.id, last_agent_id=actor.id,
                  changed=True, resolved_at=conv.resolved_at, handoff_reason=conv.handoff_reason,
                  system_text=text,
                  push=_event(conv, "conversation.assigned", Status.ASSIGNED, conv.handoff_reason),
                  follow=(Follow("agent", actor.id),), republish_queue=True, stop_bot=True)


def _claim(conv: ConversationState, actor: Actor) -> Change:
    _agent_only(actor)
    if conv.status is Status.ASSIGNED and conv.assignee_id == actor.id:
        return _same(conv)
    if conv.status is Status.SNOOZED and conv.assignee_id == actor.id:
        return _woken(conv)
    if conv.status in _OWNED:
        raise TransitionRefused("conversation is already assigned")
    return _taken(conv, actor, f"{actor.name or 'An agent'} joined the conversation")


def _resolve(conv: ConversationState, actor: Actor, now: datetime) -> Change:
    _agent_only(actor)
    _owner_only(conv, actor)
    if conv.status is Status.RESOLVED:
        return _same(conv)
    return Change(before=conv.status, status=Status.RESOLVED, assignee_id=conv.assignee_id,
                  last_agent_id=conv.last_agent_id, changed=True, resolved_at=now,
                  handoff_reason=conv.handoff_reason,
                  push=_event(conv, "conversation.resolved", Status.RESOLVED, conv.handoff_reason),
                  republish_queue=conv.status is Status.QUEUED, offer_waiting=True, stop_bot=True)


def _handback(conv: ConversationState, actor: Actor) -> Change:
    _agent_only(actor)
    _owner_only(conv, actor)
    if conv.status is Status.BOT:
        return _same(conv)
    return Change(before=conv.status, status=Status.BOT, assignee_id=None, last_agent_id=conv.last_agent_id,
                  changed=True, resolved_at=conv.resolved_at, handoff_reason=None, clear_bot_offer=True,
                  system_text="The assistant is back in the conversation",
                  republish_queue=conv.status is Status.QUEUED, offer_waiting=True)


def _write(conv: ConversationState, actor: Actor, now: datetime) -> Change:
    match actor.kind:
        case ActorKind.AGENT:
            if (conv.status in _OWNED and conv.assignee_id != actor.id) or (
                    conv.status is Status.RESOLVED and conv.last_agent_id not in (None, actor.id)):
                raise TransitionRefused(
                    "this conversation is another agent's; claim it or ask them to hand it over")
            if conv.status is Status.SNOOZED:
                return _woken(conv)  # its agent takes it up again by writing
            if conv.status in (Status.BOT, Status.QUEUED):
                # An agent who writes takes the conversation, as in every help desk. Their own
                # message says who they are: no "joined" notice.
                return _taken(conv, actor, None)
        case ActorKind.BOT:
            if conv.status is not Status.BOT:
                raise TransitionRefused("the AI agent does not post while a human owns the conversation")
        case ActorKind.USER:
            if conv.status is Status.RESOLVED:
                return _reopen(conv, now)
            if conv.status is Status.SNOOZED:
                return _woken(conv)  # the user wrote: back with its agent
        case ActorKind.SYSTEM:
            pass
    return _same(conv)


def _transfer(conv: ConversationState, actor: Actor, now: datetime, target: Actor | None,
              comment: str | None) -> Change:
    """An agent (the owner, or anyone while nobody owns it) or an admin hands the conversation to
    another agent, or back to the queue (for a team). The comment is a note the agents read."""
    if actor.kind not in (ActorKind.AGENT, ActorKind.SYSTEM):
        raise TransitionRefused("only agents and admins transfer conversations")
    if actor.kind is ActorKind.AGENT:
        _owner_only(conv, actor)
    if conv.status is Status.RESOLVED:
        raise TransitionRefused("a resolved conversation is not transferred; it reopens when the user writes")
    if target is not None and conv.status is Status.ASSIGNED and conv.assignee_id == target.id:
        return _same(conv)
    if target is not None and conv.status is Status.SNOOZED and conv.assignee_id == target.id:
        return _woken(conv)
    who = actor.name or ("An admin" if actor.kind is ActorKind.SYSTEM else "An agent")
    to = f" to {target.name or 'another agent'}" if target is not None else " to the queue"
    note = f"{who} transferred this conversation{to}" + (f": {comment}" if comment else "")
    if target is None:
        queued = conv.status is Status.QUEUED
        return Change(before=conv.status, status=Status.QUEUED, assignee_id=None, last_agent_id=conv.last_agent_id,
                      changed=True, resolved_at=conv.resolved_at, queued_at=None if queued else now,
                      handoff_reason="transfer", system_text=None if queued else "Connecting you with another agent",
                      note_text=note, push=_event(conv, "conversation.handoff", Status.QUEUED, "transfer"),
                      republish_queue=queued, offer_waiting=True, stop_bot=True)
    return Change(before=conv.status, status=Status.ASSIGNED, assignee_id=target.id, last_agent_id=target.id,
                  changed=True, resolved_at=conv.resolved_at, handoff_reason=conv.handoff_reason,
                  system_text=f"{target.name or 'An agent'} joined the conversation", note_text=note,
                  push=_event(conv, "conversation.assigned", Status.ASSIGNED, conv.handoff_reason),
                  follow=(Follow("agent", target.id),), republish_queue=conv.status is Status.QUEUED,
                  offer_waiting=conv.status is Status.ASSIGNED, stop_bot=True)


def _snooze(conv: ConversationState, actor: Actor) -> Change:
    """Its agent puts an assigned conversation aside: it leaves their active list (and their
    capacity) until it wakes. The user is not told; the AI agent stays out of it."""
    _agent_only(actor)
    _owner_only(conv, actor)
    if conv.status is Status.SNOOZED:
        return _same(conv)
    if conv.status is not Status.ASSIGNED:
        raise TransitionRefused("only a conversation assigned to you is snoozed")
    return Change(before=conv.status, status=Status.SNOOZED, assignee_id=conv.assignee_id,
                  last_agent_id=conv.last_agent_id, changed=True, resolved_at=conv.resolved_at,
                  handoff_reason=conv.handoff_reason, offer_waiting=True)


def _wake(conv: ConversationState, actor: Actor) -> Change:
    """The snooze is over (the server at the time, or its agent): back to assigned."""
    if actor.kind is ActorKind.AGENT:
        _owner_only(conv, actor)
    elif actor.kind is not ActorKind.SYSTEM:
        raise TransitionRefused("only its agent or the server wakes a snoozed conversation")
    if conv.status is not Status.SNOOZED:
        return _same(conv)
    return _woken(conv)


def _woken(conv: ConversationState) -> Change:
    return Change(before=conv.status, status=Status.ASSIGNED, assignee_id=conv.assignee_id,
                  last_agent_id=conv.last_agent_id, changed=True, resolved_at=conv.resolved_at,
                  handoff_reason=conv.handoff_reason, follow=(Follow("agent", conv.assignee_id or ""),),
                  stop_bot=True)


def _reopen(conv: ConversationState, now: datetime) -> Change:
    """A user who writes into a resolved conversation reopens it: with the last agent while the
    tenant's cooldown runs, else with the AI agent."""
    recent = conv.last_agent_id is not None and conv.resolved_at is not None and (
        now - _aware(conv.resolved_at) < timedelta(seconds=conv.reopen_cooldown_s))
    if recent:
        return Change(before=conv.status, status=Status.ASSIGNED, assignee_id=conv.last_agent_id,
                      last_agent_id=conv.last_agent_id, changed=True, handoff_reason=conv.handoff_reason,
                      follow=(Follow("agent", conv.last_agent_id or ""),), stop_bot=True)
    return Change(before=conv.status, status=Status.BOT, assignee_id=None, last_agent_id=conv.last_agent_id,
                  changed=True, handoff_reason=conv.handoff_reason)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
