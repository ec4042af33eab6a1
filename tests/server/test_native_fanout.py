"""``NativeFanout`` moves a socket's topic from its queue to the uWS topic only when no queued or
held frame could be overtaken, takes it back for a catch-up from the last seq uWS delivered, and
ends a socket uWS holds too much for. A recording stand-in for socketify's ``send`` plays uWS:
it keeps who is subscribed and what each subscriber was given."""

from typing import Any

from server.core.wire import MESSAGE_PREFIX, frame_seq
from server.fanout import Connection, NativeFanout


class FakeUws:
    def __init__(self) -> None:
        self.subscribers: dict[str, set[str]] = {}
        self.given: dict[str, list[str]] = {}
        self.buffered: dict[str, int] = {}

    def sender(self, conn_id: str) -> Any:
        async def send(event: dict[str, Any]) -> bool:
            topic = event["topic"]
            if event["type"] == "websocket.subscribe":
                self.subscribers.setdefault(topic, set()).add(conn_id)
            elif event["type"] == "websocket.unsubscribe":
                self.subscribers.get(topic, set()).discard(conn_id)
            elif event["type"] == "websocket.publish":
                for cid in self.subscribers.get(topic, ()):
                    self.given.setdefault(cid, []).append(event["text"])
            return True

        return send


def _msg(seq: int) -> str:
    # The fixed prefix the fan-out reads a seq from (server.chat.service.message_frame).
    return f'{MESSAGE_PREFIX}{seq}, "conversation_id": "c1", "message": {{"seq": {seq}}}}}'


def _conn(uws: FakeUws, conn_id: str, overflowed: list[str] | None = None) -> Connection:
    return Connection(conn_id, ("t", "user", conn_id), queue_max=50, native_send=uws.sender(conn_id),
                      on_overflow=(lambda c: overflowed.append(c.id)) if overflowed is not None else None,
                      buffered=lambda: uws.buffered.get(conn_id, 0), buffer_limit=1000)


def _queued(conn: Connection) -> list[str]:
    out = []
    while not conn.queue.empty():
        item = conn.queue.get_nowait()
        assert item is not None
        out.append(item)
    return out


async def test_a_topic_joins_uws_only_after_the_replay_and_the_queue_are_done() -> None:
    uws, fanout, topic = FakeUws(), NativeFanout(), "c:c1"
    conn = _conn(uws, "a")
    conn.resume.hold(topic)  # a replay of seq 1..3 starts
    await fanout.add(conn, topic)
    await fanout.deliver(topic, _msg(4))  # live during the replay: held, not given by uWS
    assert uws.subscribers.get(topic, set()) == set()
    for seq in (1, 2, 3):
        conn.offer(_msg(seq))
    for data in conn.resume.release(topic, 3):
        conn.offer(data, topic)
    await fanout.deliver(topic, _msg(5))  # the queue still holds the replay: Python path
    assert uws.subscribers.get(topic, set()) == set()
    assert [frame_seq(d) for d in _queued(conn)] == [1, 2, 3, 4, 5]
    await fanout.deliver(topic, _msg(3))  # a late live copy of a replayed message: dropped
    assert conn.queue.empty()
    await fanout.deliver(topic, _msg(6))  # queue drained, no replay: uWS from here on
    assert uws.subscribers[topic] == {"a"}
    assert uws.given["a"] == [_msg(6)]
    assert conn.queue.empty()


async def test_a_catch_up_takes_the_topic_back_from_where_uws_left_it() -> None:
    uws, fanout, topic = FakeUws(), NativeFanout(), "c:c1"
    conn = _conn(uws, "a")
    conn.resume.start_at(topic, 0)
    await fanout.add(conn, topic)
    for seq in (1, 2, 3):
        await fanout.deliver(topic, _msg(seq))
    assert uws.given["a"] == [_msg(1), _msg(2), _msg(3)]
    assert await fanout.to_python(conn, topic) == 3
    assert uws.subscribers[topic] == set()
    conn.resume.hold(topic)
    await fanout.deliver(topic, _msg(7))  # held while the catch-up replays 4..6
    assert conn.queue.empty() and uws.given["a"] == [_msg(1), _msg(2), _msg(3)]


async def test_a_socket_uws_holds_too_much_for_is_ended_before_uws_limit() -> None:
    uws, fanout, topic = FakeUws(), NativeFanout(), "c:c1"
    overflowed: list[str] = []
    fast, slow = _conn(uws, "fast", overflowed), _conn(uws, "slow", overflowed)
    for conn in (fast, slow):
        await fanout.add(conn, topic)
    await fanout.deliver(topic, _msg(1))
    assert overflowed == []
    uws.buffered["slow"] = 1001
    await fanout.deliver(topic, _msg(2))
    await fanout.deliver(topic, _msg(3))
    assert overflowed == ["slow"]  # once, and only the reader that fell behind
    await fanout.detach(slow)
    assert uws.subscribers[topic] == {"fast"}
