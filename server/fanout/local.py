"""Delivery to the sockets of this node. ``PythonFanout`` gives every connection a bounded
queue drained by its own writer task; ``NativeFanout`` hands topics to uWS (socketify), whose
C++ fan-out never enters Python."""

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from server.core.wire import conversation_of, frame_seq

__all__ = ["Connection", "LocalFanout", "NativeFanout", "PythonFanout", "ResumeState", "SendQueue", "frame_seq"]


class SendQueue:
    """A connection's bounded queue of frames to send, as much of ``asyncio.Queue`` as the
    gateway uses (``put_nowait``, ``get_nowait``, ``task_done``, ``join``), with nothing allocated
    while it is empty: an idle socket holds two words here instead of four deques and an Event
    (about 3 KiB). Its reader is a writer task started when a frame arrives (``on_put``) that ends
    once the queue is drained, so an idle socket holds no task either."""

    __slots__ = ("_done", "_items", "_unfinished", "maxsize", "on_put")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[str] | None = None
        self._unfinished = 0
        self._done: asyncio.Future[None] | None = None
        self.on_put: Callable[[], None] | None = None

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, data: str) -> None:
        items = self._items
        if items is None:
            items = self._items = deque()
        elif 0 < self.maxsize <= len(items):
            raise asyncio.QueueFull
        items.append(data)
        self._unfinished += 1
        if self.on_put is not None:
            self.on_put()

    def get_nowait(self) -> str:
        items = self._items
        if not items:
            raise asyncio.QueueEmpty
        data = items.popleft()
        if not items:
            self._items = None
        return data

    def task_done(self) -> None:
        self._unfinished -= 1
        if self._unfinished <= 0:
            self._unfinished = 0
            done, self._done = self._done, None
            if done is not None and not done.done():
                done.set_result(None)

    def abandon(self) -> None:
        """The socket is gone: drop what is queued and let every ``join`` return."""
        self._items = None
        self._unfinished = 1
        self.task_done()

    async def join(self) -> None:
        """Until every frame put so far has been sent (``task_done`` for each)."""
        if self._unfinished <= 0:
            return
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._done)


class ResumeState:
    """Where one socket stands in each topic it follows, so a database replay and live frames
    meet without a gap, a duplicate or a reordering:

    - while a replay runs, live frames of its topic are *held* and let through after it;
    - the *floor* is the last seq a replay sent: live copies at or below it are dropped;
    - *seen* is the highest seq the socket was given: where a catch-up starts;
    - while the bus is lost (Redis down), the socket's conversation topics are *frozen*: held
      like during a replay, from the loss until the catch-up that follows the bus's return.
      Otherwise the first live frame after the return (seq 21, say) would move *seen* past
      what the outage swallowed (16..20), and the catch-up starting at *seen* would skip it.

    Holds nest (a replay inside a freeze): frames are let through when the last one ends."""

    __slots__ = ("_floor", "_frozen", "_held", "_holds", "_seen", "held_max")

    def __init__(self, held_max: int) -> None:
        self._held: dict[str, list[str]] = {}
        self._holds: dict[str, int] = {}
        self._floor: dict[str, int] = {}
        self._seen: dict[str, int] = {}
        self._frozen: set[str] | None = None
        self.held_max = held_max

    def start_at(self, topic: str, seq: int) -> None:
        """The socket starts following ``topic`` with everything up to ``seq`` known."""
        self._seen.setdefault(topic, seq)

    def seen(self, topic: str) -> int | None:
        return self._seen.get(topic)

    def advance(self, topic: str, seq: int) -> None:
        """The socket was given everything up to ``seq`` by another path (uWS's native topic)."""
        if seq > self._seen.get(topic, 0):
            self._seen[topic] = seq

    def holding(self, topic: str) -> bool:
        return topic in self._held

    def floor(self, topic: str) -> int:
        return self._floor.get(topic, 0)

    def hold(self, topic: str) -> None:
        """A replay of ``topic`` begins: live frames wait."""
        self._held.setdefault(topic, [])
        self._holds[topic] = self._holds.get(topic, 0) + 1

    def release(self, topic: str, replayed_to: int) -> list[str]:
        """The replay sent everything up to ``replayed_to``: the held frames, to offer again
        (none while another hold of the topic goes on)."""
        self._floor[topic] = max(self._floor.get(topic, 0), replayed_to)
        if replayed_to > self._seen.get(topic, 0):
            self._seen[topic] = replayed_to
        left = self._holds.get(topic, 0) - 1
        if left > 0:
            self._holds[topic] = left
            return []
        self._holds.pop(topic, None)
        return self._held.pop(topic, [])

    def freeze(self, topic: str) -> None:
        """The bus is lost: hold ``topic`` until ``thaw`` (once per outage)."""
        if self._frozen is None:
            self._frozen = set()
        if topic not in self._frozen:
            self._frozen.add(topic)
            self.hold(topic)

    def thaw(self, topic: str) -> list[str]:
        """The catch-up after the bus's return is done: the held frames, to offer again."""
        if not self._frozen or topic not in self._frozen:
            return []
        self._frozen.discard(topic)
        return self.release(topic, 0)

    def admit(self, topic: str, data: str) -> bool:
        """Whether a live frame goes to the socket now (False: held, or already replayed)."""
        if self._held:
            held = self._held.get(topic)
            if held is not None and len(held) < self.held_max:
                held.append(data)
                return False
        seq = frame_seq(data)
        if seq is not None:
            if seq <= self._floor.get(topic, 0):
                return False
            if seq > self._seen.get(topic, 0):
                self._seen[topic] = seq
        return True


class Connection:
    """One accepted socket as fan-out sees it."""

    __slots__ = ("buffer_limit", "buffered", "id", "key", "native_send", "on_overflow", "overflowed", "python_topics",
                 "queue", "resume", "topics")

    def __init__(
        self,
        conn_id: str,
        key: tuple[str, str, str],
        *,
        queue_max: int,
        native_send: Callable[[dict[str, Any]], Awaitable[Any]] | None = None,
        on_overflow: Callable[["Connection"], None] | None = None,
        buffered: Callable[[], int] | None = None,
        buffer_limit: int = 0,
    ) -> None:
        self.id = conn_id
        self.key = key  # (tenant_id, role, principal id)
        self.queue = SendQueue(queue_max)
        self.topics: set[str] = set()
        self.native_send = native_send
        self.on_overflow = on_overflow
        self.overflowed = False
        self.resume = ResumeState(held_max=queue_max)
        # Native sockets only: topics still delivered through the queue above (not subscribed in
        # uWS yet, or taken back for a catch-up), and what uWS holds unsent for the socket.
        self.python_topics: set[str] = set()
        self.buffered = buffered
        self.buffer_limit = buffer_limit

    def backed_up(self) -> bool:
        """uWS holds more unsent bytes for this socket than it may (a slow consumer)."""
        return self.buffered is not None and self.buffer_limit > 0 and self.buffered() > self.buffer_limit

    def ready_for_native(self, topic: str, seq: int | None) -> bool:
        """A topic moves from the queue to uWS only when nothing queued could be overtaken: no
        replay running, the queue empty (its writer sends synchronously into uWS, in order) and
        the frame newer than anything a replay sent."""
        return (not self.overflowed and not self.resume.holding(topic) and self.queue.empty()
                and (seq is None or seq > self.resume.floor(topic)))

    def offer(self, data: str, topic: str | None = None) -> bool:
        """Queue a frame without ever blocking the publisher; a full queue marks a slow consumer."""
        if self.overflowed:
            return False
        if topic is not None and not self.resume.admit(topic, data):
            return True
        try:
            self.queue.put_nowait(data)
            return True
        except asyncio.QueueFull:
            self.overflowed = True
            if self.on_overflow is not None:
                self.on_overflow(self)
            return False


class LocalFanout(ABC):
    native = False

    def __init__(self) -> None:
        self.topics: dict[str, set[Connection]] = {}

    def members(self, topic: str) -> set[Connection]:
        return self.topics.get(topic, set())

    async def add(self, conn: Connection, topic: str) -> bool:
        """Returns True when this node had no subscriber of ``topic`` before."""
        first = topic not in self.topics
        self.topics.setdefault(topic, set()).add(conn)
        conn.topics.add(topic)
        return first

    async def freeze(self, conn: Connection, topic: str) -> None:
        """The bus is lost: ``conn``'s live frames of a conversation topic wait for the catch-up
        (``ResumeState.freeze``); other topics have no catch-up and go on."""
        if conversation_of(topic) is not None:
            conn.resume.freeze(topic)

    async def freeze_all(self) -> None:
        for topic, members in list(self.topics.items()):
            for conn in list(members):
                await self.freeze(conn, topic)

    async def remove(self, conn: Connection, topic: str) -> bool:
        """Returns True when this node has no subscriber of ``topic`` left."""
        conn.resume.thaw(topic)
        conn.topics.discard(topic)
        members = self.topics.get(topic)
        if members is None:
            return False
        members.discard(conn)
        if not members:
            del self.topics[topic]
            return True
        return False

    async def remove_all(self, conn: Connection) -> list[str]:
        emptied = []
        for topic in list(conn.topics):
            if await self.remove(conn, topic):
                emptied.append(topic)
        return emptied

    @abstractmethod
    async def deliver(self, topic: str, data: str) -> int: ...


class PythonFanout(LocalFanout):
    async def deliver(self, topic: str, data: str) -> int:
        n = 0
        for conn in tuple(self.topics.get(topic, ())):
            n += conn.offer(data, topic)
        return n


class NativeFanout(LocalFanout):
    """socketify's ``websocket.subscribe``/``websocket.publish`` ASGI extensions. Membership is
    mirrored here so the node knows which topics it needs from the bus.

    A socket joins a topic on the Python path (its queue, with ``ResumeState`` holding live
    frames during a replay and dropping what the replay sent) and moves to the uWS topic on the
    first live frame that finds its queue drained and no replay running: the subscribe and the
    publish happen in that same loop step (socketify's ``send`` calls uWS synchronously), so no
    frame can overtake one queued before it. A catch-up takes the topic back to the Python path
    (``to_python``).

    Each topic keeps its members in two sets, the queued ones and the uWS ones, so a frame
    costs Python work only for the sockets still on their queue: one publish reaches every uWS
    subscriber, whatever their number. How much uWS holds for each of them is read once per
    ``check_bytes`` published on this node (every publish with 0): no socket can grow more than
    that between two looks, so one is ended (``on_overflow``) before uWS's own limit if
    ``check_bytes`` is below the room between ``Connection.buffer_limit`` and that limit."""

    native = True

    def __init__(self, *, check_bytes: int = 0) -> None:
        super().__init__()
        # The highest seq published natively on each topic: what every uWS subscriber was given.
        self.published: dict[str, int] = {}
        self.queued: dict[str, set[Connection]] = {}
        self.subscribed: dict[str, set[Connection]] = {}
        self.check_bytes = check_bytes
        self._unchecked = 0
        self._touched: set[str] = set()

    async def add(self, conn: Connection, topic: str) -> bool:
        # A topic the socket already follows stays where it is: marking a uWS topic "queued"
        # again would hand its frames to both paths.
        new = topic not in conn.topics
        first = await super().add(conn, topic)
        if new:
            if conn.native_send is not None:
                conn.python_topics.add(topic)
            self.queued.setdefault(topic, set()).add(conn)
        return first

    async def remove(self, conn: Connection, topic: str) -> bool:
        emptied = await super().remove(conn, topic)
        _discard(self.queued, topic, conn)
        if conn.native_send is not None:
            conn.python_topics.discard(topic)
            if _discard(self.subscribed, topic, conn):
                # The socket may already be gone; its membership is dropped either way.
                with contextlib.suppress(Exception):  # broad: the socket may already be gone
                    await conn.native_send({"type": "websocket.unsubscribe", "topic": topic})
        if emptied:
            self.published.pop(topic, None)
        return emptied

    async def _unsubscribe(self, conn: Connection, topic: str) -> None:
        """``topic`` of ``conn`` goes back from uWS to its queue."""
        _discard(self.subscribed, topic, conn)
        self.queued.setdefault(topic, set()).add(conn)
        conn.python_topics.add(topic)
        conn.resume.advance(topic, self.published.get(topic, 0))
        with contextlib.suppress(Exception):  # broad: the socket may already be gone
            await conn.native_send({"type": "websocket.unsubscribe", "topic": topic})  # type: ignore[misc]

    async def freeze(self, conn: Connection, topic: str) -> None:
        if (conversation_of(topic) is not None and conn.native_send is not None and topic in conn.topics
                and topic not in conn.python_topics):
            await self._unsubscribe(conn, topic)  # a held frame must not be overtaken by uWS
        await super().freeze(conn, topic)

    async def to_python(self, conn: Connection, topic: str) -> int | None:
        """Take ``topic`` of ``conn`` back from uWS to the Python path; returns the last seq the
        socket was given (where a catch-up starts)."""
        if conn.native_send is not None and topic in conn.topics and topic not in conn.python_topics:
            await self._unsubscribe(conn, topic)
        return conn.resume.seen(topic)

    async def detach(self, conn: Connection) -> None:
        """Nothing more reaches ``conn`` from uWS topics (it is being closed)."""
        if conn.native_send is None:
            return
        for topic in list(conn.topics):
            if topic not in conn.python_topics:
                await self._unsubscribe(conn, topic)

    async def deliver(self, topic: str, data: str) -> int:
        members = self.topics.get(topic)
        if not members:
            return 0
        seq = frame_seq(data)
        queued = self.queued.get(topic)
        if queued:
            for conn in tuple(queued):
                if conn.native_send is None or not conn.ready_for_native(topic, seq):
                    conn.offer(data, topic)
                    continue
                # No await that could suspend from here to the publish below: socketify's send
                # runs uWS's subscribe and publish synchronously.
                queued.discard(conn)
                conn.python_topics.discard(topic)
                conn.resume.admit(topic, data)
                await conn.native_send({"type": "websocket.subscribe", "topic": topic})
                self.subscribed.setdefault(topic, set()).add(conn)
            if not queued:
                del self.queued[topic]
        subscribed = self.subscribed.get(topic)
        if not subscribed:
            return len(members)
        if seq is not None and seq > self.published.get(topic, 0):
            self.published[topic] = seq
        # Any live socket of this process can publish; uWS delivers to every subscriber.
        publisher = next(iter(subscribed))
        await publisher.native_send({"type": "websocket.publish", "topic": topic, "text": data})  # type: ignore[misc]
        await self._watch(topic, len(data))
        return len(members)

    async def _watch(self, topic: str, nbytes: int) -> None:
        """A reader falling behind is ended by the app (told slow_consumer, then bye) before
        uWS's own backpressure limit would close it without a word."""
        self._touched.add(topic)
        self._unchecked += nbytes
        if self._unchecked < self.check_bytes:
            return
        self._unchecked = 0
        touched, self._touched = self._touched, set()
        for t in touched:
            for conn in tuple(self.subscribed.get(t, ())):
                if not conn.overflowed and conn.backed_up():
                    conn.overflowed = True
                    # Nothing more from uWS from this very step (the session ends it later).
                    for own in list(conn.topics):
                        if own not in conn.python_topics:
                            await self._unsubscribe(conn, own)
                    if conn.on_overflow is not None:
                        conn.on_overflow(conn)


def _discard(index: dict[str, set[Connection]], topic: str, conn: Connection) -> bool:
    """Drop ``conn`` from ``index[topic]`` (and the topic once empty); whether it was there."""
    members = index.get(topic)
    if members is None or conn not in members:
        return False
    members.discard(conn)
    if not members:
        del index[topic]
    return True
