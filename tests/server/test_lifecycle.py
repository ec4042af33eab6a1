"""The conversation state machine as a full truth table: every status × action × actor, with
the side effects each transition must carry (system message, push event, who follows, queue
republish, offering waiting conversations, stopping the AI agent)."""

from datetime import UTC, datetime, timedelta

import pytest

from server.chat.lifecycle import (
    Action,
    Actor,
    ActorKind,
    ConversationState,
    Follow,
    Status,
    TransitionRefused,
    transition,
)

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
ACTORS = {
    "user": Actor(ActorKind.USER, "u1", "Ada"),
    "a1": Actor(ActorKind.AGENT, "a1", "Sam"),  # the owner (assigned) or last agent (resolved)
    "a2": Actor(ActorKind.AGENT, "a2", "Kim"),
    "bot": Actor(ActorKind.BOT, "bot-1", "Assistant"),
    "system": Actor(ActorKind.SYSTEM, "router"),
}
STATES = {
    Status.BOT: ConversationState("c1", "t1", "u1", Status.BOT),
    Status.QUEUED: ConversationState("c1", "t1", "u1", Status.QUEUED, handoff_reason="user_request"),
    Status.ASSIGNED: ConversationState("c1", "t1", "u1", Status.ASSIGNED, assignee_id="a1", last_agent_id="a1"),
    Status.RESOLVED: ConversationState("c1", "t1", "u1", Status.RESOLVED, assignee_id="a1", last_agent_id="a1",
                                       resolved_at=NOW - timedelta(hours=1)),
    Status.SNOOZED: ConversationState("c1", "t1", "u1", Status.SNOOZED, assignee_id="a1", last_agent_id="a1"),
}
ACTIONS = [Action.HANDOFF, Action.CLAIM, Action.RESOLVE, Action.HANDBACK, Action.WRITE]

# Outcome per (status, actor), one column per action in ACTIONS order:
#   B Q R: the new status; A1 A2: assigned to that agent; = nothing changes; X refused.
TABLE = """
status    actor   handoff claim resolve handback write
bot       user    Q       X     X       X        =
bot       a1      Q       A1    R       =        A1
bot       a2      Q       A2    R       =        A2
bot       bot     Q       X     X       X        =
bot       system  Q       X     X       X        =
queued    user    =       X     X       X        =
queued    a1      =       A1    R       B        A1
queued    a2      =       A2    R       B        A2
queued    bot     =       X     X       X        X
queued    system  =       X     X       X        =
assigned  user    =       X     X       X        =
assigned  a1      =       =     R       B        =
assigned  a2      =       X     X       X        X
assigned  bot     =       X     X       X        X
assigned  system  =       X     X       X        =
resolved  user    Q       X     X       X        B
resolved  a1      Q       A1    =       B        =
resolved  a2      Q       A2    =       B        X
resolved  bot     Q       X     X       X        X
resolved  system  Q       X     X       X        =
snoozed   user    =       X     X       X        A1
snoozed   a1      =       A1    R       B        A1
snoozed   a2      =       X     X       X        X
snoozed   bot     =       X     X       X        X
snoozed   system  =       X     X       X        =
"""


def _cells() -> list[tuple[Status, str, Action, str]]:
    rows = [line.split() for line in TABLE.strip().splitlines()[1:]]
    return [(Status(r[0]), r[1], action, r[2 + i]) for r in rows for i, action in enumerate(ACTIONS)]


CELLS = _cells()


def test_the_table_covers_every_status_action_and_actor() -> None:
    assert {(s, a, act) for s, a, act, _ in CELLS} == {
        (s, a, act) for s in Status for a in ACTORS for act in ACTIONS}


@pytest.mark.parametrize(("status", "actor", "action", "outcome"), CELLS,
                         ids=[f"{s}-{a}-{act}" for s, a, act, _ in CELLS])
def test_transition(status: Status, actor: str, action: Action, outcome: str) -> None:
    conv = STATES[status]
    who = ACTORS[actor]
    if outcome == "X":
        with pytest.raises(TransitionRefused) as err:
            transition(conv, action, who, NOW, reason="user_request")
        assert err.value.code == "forbidden"
        return
    change = transition(conv, action, who, NOW, reason="user_request", notice="A person will be with you")
    assert change.before is status
    if outcome == "=":
        assert not change.changed
        assert (change.status, change.assignee_id, change.last_agent_id) == (
            conv.status, conv.assignee_id, conv.last_agent_id)
        assert change.push is None and change.system_text is None and change.follow == ()
        assert not (change.republish_queue or change.offer_waiting or change.summarize or change.stop_bot)
        return
    assert change.changed
    expected = {"B": Status.BOT, "Q": Status.QUEUED, "R": Status.RESOLVED, "A1": Status.ASSIGNED,
                "A2": Status.ASSIGNED}[outcome]
    assert change.status is expected
    # The user's devices always follow their conversation; an assigned agent follows its agent topic.
    assert change.follow[0] == Follow("user", "u1")
    if expected is Status.ASSIGNED:
        owner = outcome.lower()
        assert change.assignee_id == owner and change.last_agent_id == owner
        assert Follow("agent", owner) in change.follow
    else:
        assert len(change.follow) == 1
    # Whatever the AI agent streams stops as soon as it no longer owns the conversation.
    assert change.stop_bot == (expected is not Status.BOT)
    _side_effects(conv, action, who, change)


def _side_effects(conv: ConversationState, action: Action, who: Actor, change: object) -> None:
    from server.chat.lifecycle import Change

    assert isinstance(change, Change)
    push = change.push.name if change.push else None
    if conv.status is Status.SNOOZED and change.status is Status.ASSIGNED:
        # woken by its agent (claim, write) or by the user writing: nobody new joins, nothing to tell
        assert push is None and change.system_text is None
        assert not (change.republish_queue or change.offer_waiting)
        return
    if action is Action.HANDOFF:
        assert push == "conversation.handoff"
        assert change.push is not None and change.push.properties == {
            "conversation_id": "c1", "status": "queued", "reason": "user_request"}
        assert change.system_text == "A person will be with you"
        assert change.queued_at == NOW and change.assignee_id is None
        assert change.handoff_reason == "user_request"
        assert change.summarize and change.offer_waiting and not change.republish_queue
    elif action is Action.CLAIM:
        assert push == "conversation.assigned"
        assert change.system_text == f"{who.name} joined the conversation"
        assert change.republish_queue and not change.offer_waiting
    elif action is Action.WRITE and who.kind is ActorKind.AGENT:
        # An agent who writes takes the conversation with the claim's side effects, except the
        # "joined" notice (their own message says who they are).
        assert push == "conversation.assigned"
        assert change.system_text is None
        assert change.republish_queue and not change.offer_waiting
    elif action is Action.WRITE:  # a user reopens a resolved conversation (cooldown over: to the bot)
        assert conv.status is Status.RESOLVED and who.kind is ActorKind.USER
        assert push is None and change.system_text is None and change.resolved_at is None
    elif action is Action.RESOLVE:
        assert push == "conversation.resolved"
        assert change.resolved_at == NOW and change.system_text is None
        assert change.offer_waiting
        assert change.republish_queue == (conv.status is Status.QUEUED)
    elif action is Action.HANDBACK:
        assert push is None
        assert change.system_text == "The assistant is back in the conversation"
        assert change.assignee_id is None and change.handoff_reason is None and change.clear_bot_offer
        assert change.offer_waiting
        assert change.republish_queue == (conv.status is Status.QUEUED)


def test_a_user_who_writes_within_the_cooldown_gets_the_last_agent_back() -> None:
    conv = ConversationState("c1", "t1", "u1", Status.RESOLVED, assignee_id="a1", last_agent_id="a1",
                             resolved_at=NOW - timedelta(seconds=30), reopen_cooldown_s=60)
    change = transition(conv, Action.WRITE, ACTORS["user"], NOW)
    assert (change.status, change.assignee_id, change.resolved_at) == (Status.ASSIGNED, "a1", None)
    assert change.follow == (Follow("user", "u1"), Follow("agent", "a1"))
    assert change.stop_bot
    # After the cooldown the AI agent answers instead.
    later = transition(conv, Action.WRITE, ACTORS["user"], NOW + timedelta(seconds=31))
    assert (later.status, later.assignee_id) == (Status.BOT, None)


def test_a_handoff_reason_is_bounded_and_defaults() -> None:
    conv = STATES[Status.BOT]
    assert transition(conv, Action.HANDOFF, ACTORS["system"], NOW, reason="x" * 100).handoff_reason == "x" * 64
    assert transition(conv, Action.HANDOFF, ACTORS["system"], NOW).handoff_reason == "requested"


def test_statuses_keep_their_stored_spelling() -> None:
    # The database and the wire hold these strings: the enums must not change them.
    assert [str(s) for s in Status] == ["bot", "queued", "assigned", "resolved", "snoozed"]
    assert Status.QUEUED == "queued"
