"""The wire format's topics and seq prefix, and a socket's resume state (held, floor, seen)."""

from datetime import UTC, datetime

import pytest

from server.chat.service import message_frame
from server.core.models import Message
from server.core.wire import (
    conversation_of,
    frame_seq,
    parse_topic,
    topic_agents,
    topic_conversation,
    topic_queue,
    topic_user,
)
from server.fanout.local import ResumeState


def test_topics_build_and_parse() -> None:
    assert parse_topic(topic_conversation("c1")) == ("c", "c1")
    assert parse_topic(topic_agents("c1")) == ("a", "c1")
    assert parse_topic(topic_queue("t1")) == ("q", "t1")
    assert parse_topic(topic_user("t1", "agent", "a1")) == ("u", "t1:agent:a1")
    assert conversation_of(topic_agents("c1")) == conversation_of(topic_conversation("c1")) == "c1"
    assert conversation_of(topic_queue("t1")) is None
    with pytest.raises(ValueError, match="not a topic"):
        parse_topic("x:1")


def test_the_seq_prefix_is_read_without_parsing() -> None:
    m = Message(tenant_id="t", conversation_id="c1", seq=42, kind="text", sender_kind="user", sender_id="u",
                text="hi", created_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert frame_seq(message_frame(m)) == 42
    assert frame_seq('{"type": "typing"}') is None


def _frame(seq: int) -> str:
    return f'{{"type": "message", "seq": {seq}, "conversation_id": "c1", "message": {{}}}}'


def test_resume_state_holds_during_a_replay_then_drops_what_it_sent() -> None:
    state = ResumeState(held_max=10)
    state.start_at("c:c1", 3)
    assert state.seen("c:c1") == 3
    state.hold("c:c1")
    assert not state.admit("c:c1", _frame(5))  # held while the replay runs
    assert state.admit("c:other", _frame(1))  # other topics flow
    held = state.release("c:c1", replayed_to=5)
    assert held == [_frame(5)]
    assert state.seen("c:c1") == 5
    assert not state.admit("c:c1", _frame(5))  # the replay sent it already
    assert state.admit("c:c1", _frame(6))
    assert state.seen("c:c1") == 6
    assert state.admit("c:c1", '{"type": "typing"}')  # frames without a seq always pass
