"""``NativeFanout`` moves a socket's topic from its queue to the uWS topic only when no queued or
held frame could be overtaken, takes it back for a catch-up from the last seq uWS delivered, and
ends a socket uWS holds too much for. A recording stand-in for socketify's ``send`` plays uWS:
it keeps who is subscribed and what each subscriber was given."""

from typing import Any

from server.core.wire import MESSAGE_PREFIX, frame_seq
from server.fanout import Connection, NativeFanout, PythonFanout


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


async def test_a_topic_followed_again_stays_on_uws_and_is_delivered_once() -> None:
    """Regression: following a topic a socket already had on uWS (a conversation event's
    ``follow``, a second subscribe) marked it queued again while uWS kept it subscribed, so a
    frame arriving while its queue was busy went both ways: a duplicate."""
    uws, fanout, topic = FakeUws(), NativeFanout(), "c:c1"
    a, b = _conn(uws, "a"), _conn(uws, "b")
    for conn in (a, b):
        conn.resume.start_at(topic, 0)
        await fanout.add(conn, topic)
    await fanout.deliver(topic, _msg(1))
    assert uws.subscribers[topic] == {"a", "b"}
    a.offer('{"type": "ack"}')  # its queue is busy (an ack its writer has not sent yet)
    await fanout.add(a, topic)
    await fanout.deliver(topic, _msg(2))
    assert uws.given["a"] == [_msg(1), _msg(2)]
    assert _queued(a) == ['{"type": "ack"}']


async def test_uws_subscribers_cost_no_python_work_per_frame_and_are_watched_every_check_bytes() -> None:
    uws, topic = FakeUws(), "c:c1"
    fanout = NativeFanout(check_bytes=10 * len(_msg(1)))
    overflowed: list[str] = []
    looked: list[str] = []
    conns = [_conn(uws, f"r{i}", overflowed) for i in range(50)]
    for conn in conns:
        conn.buffered = lambda cid=conn.id: looked.append(cid) or uws.buffered.get(cid, 0)  # type: ignore[misc]
        await fanout.add(conn, topic)
    await fanout.deliver(topic, _msg(1))  # every socket moves to uWS on this frame
    assert fanout.queued == {} and len(uws.subscribers[topic]) == 50
    for seq in range(2, 9):
        await fanout.deliver(topic, _msg(seq))
    assert looked == []  # eight publishes, nothing read per subscriber
    uws.buffered["r7"] = 1001
    for seq in range(9, 12):
        await fanout.deliver(topic, _msg(seq))
    assert len(looked) == 50 and overflowed == ["r7"]  # one look at everyone, after 10 frames
    assert "r7" not in uws.subscribers[topic]  # and uWS gives it nothing more from that step
    assert len(uws.given["r7"]) == 10 and len(uws.given["r0"]) == 11


async def test_a_frame_live_before_the_catch_up_after_a_bus_outage_does_not_hide_what_the_outage_swallowed() -> None:
    """Regression (found by tests/server/test_chaos.py): Redis returns, a message published
    right then (seq 9) reaches the socket before the node's catch-up runs, and the catch-up,
    starting at the highest seq the socket was given, skipped 4..8 acked during the outage.
    Frozen from the loss to the catch-up, the topic holds seq 9 until the replay sent 4..8."""
    for fanout in (NativeFanout(), PythonFanout()):
        uws, topic = FakeUws(), "c:c1"
        conn = _conn(uws, "a") if fanout.native else Connection("a", ("t", "user", "a"), queue_max=50)
        conn.resume.start_at(topic, 0)
        await fanout.add(conn, topic)
        for seq in (1, 2, 3):
            await fanout.deliver(topic, _msg(seq))
        await fanout.freeze_all()  # Redis is lost; 4..8 are acked and never published
        await fanout.deliver(topic, _msg(9))  # Redis is back: 9 arrives live before the catch-up
        seen = await fanout.to_python(conn, topic) if isinstance(fanout, NativeFanout) else conn.resume.seen(topic)
        assert seen == 3  # the catch-up starts where the outage began
        conn.resume.hold(topic)  # the catch-up's replay (Session.resync): 4..8 from the database
        for seq in range(4, 9):
            conn.offer(_msg(seq))
        assert conn.resume.release(topic, 8) == []  # still frozen
        for data in conn.resume.thaw(topic):
            conn.offer(data, topic)
        given = [frame_seq(d) for d in uws.given.get("a", [])] + [frame_seq(d) for d in _queued(conn)]
        assert given == list(range(1, 10)), (type(fanout).__name__, given)


async def test_the_send_queue_allocates_nothing_while_empty_and_join_waits_for_every_frame() -> None:
    import asyncio

    from server.fanout import SendQueue

    woken: list[int] = []
    q = SendQueue(2)
    q.on_put = lambda: woken.append(q.qsize())
    assert q.empty() and q._items is None
    await q.join()  # nothing put: returns at once
    q.put_nowait("a")
    q.put_nowait("b")
    try:
        q.put_nowait("c")
        raise AssertionError("a full queue must refuse")
    except asyncio.QueueFull:
        pass
    assert woken == [1, 2]
    joined = asyncio.ensure_future(q.join())
    assert q.get_nowait() == "a"
    q.task_done()
    await asyncio.sleep(0)
    assert not joined.done()
    assert q.get_nowait() == "b" and q._items is None
    q.task_done()
    await asyncio.wait_for(joined, 1)
    q.put_nowait("d")
    gone = asyncio.ensure_future(q.join())
    q.abandon()  # the socket died: nobody waits forever
    await asyncio.wait_for(gone, 1)
    assert q.empty()
