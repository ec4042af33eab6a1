"""Delivery to the sockets of this node. ``PythonFanout`` gives every connection a bounded
queue drained by its own writer task; ``NativeFanout`` hands topics to uWS (socketify), whose
C++ fan-out never enters Python."""

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

from server.core.wire import frame_seq

__all__ = ["Connection", "LocalFanout", "NativeFanout", "PythonFanout", "ResumeState", "frame_seq"]


class ResumeState:
    """Where one socket stands in each topic it follows, so a database replay and live frames
    meet without a gap, a duplicate or a reordering:

    - while a replay runs, live frames of its topic are *held* and let through after it;
    - the *floor* is the last seq a replay sent: live copies at or below it are dropped;
    - *seen* is the highest seq the socket was given: where a catch-up starts."""

    __slots__ = ("_floor", "_held", "_seen", "held_max")

    def __init__(self, held_max: int) -> None:
        self._held: dict[str, list[str]] = {}
        self._floor: dict[str, int] = {}
        self._seen: dict[str, int] = {}
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
        self._held[topic] = []

    def release(self, topic: str, replayed_to: int) -> list[str]:
        """The replay sent everything up to ``replayed_to``: the held frames, to offer again."""
        held = self._held.pop(topic, [])
        self._floor[topic] = max(self._floor.get(topic, 0), replayed_to)
        if replayed_to > self._seen.get(topic, 0):
            self._seen[topic] = replayed_to
        return held

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
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=queue_max)
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

    async def remove(self, conn: Connection, topic: str) -> bool:
        """Returns True when this node has no subscriber of ``topic`` left."""
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
    (``to_python``)."""

    native = True

    def __init__(self) -> None:
        super().__init__()
        # The highest seq published natively on each topic: what every uWS subscriber was given.
        self.published: dict[str, int] = {}

    async def add(self, conn: Connection, topic: str) -> bool:
        first = await super().add(conn, topic)
        if conn.native_send is not None and topic not in conn.python_topics:
            conn.python_topics.add(topic)
        return first

    async def remove(self, conn: Connection, topic: str) -> bool:
        emptied = await super().remove(conn, topic)
        if conn.native_send is not None:
            was_python = topic in conn.python_topics
            conn.python_topics.discard(topic)
            if not was_python:
                # The socket may already be gone; its membership is dropped either way.
                with contextlib.suppress(Exception):  # broad: the socket may already be gone
                    await conn.native_send({"type": "websocket.unsubscribe", "topic": topic})
        return emptied

    async def to_python(self, conn: Connection, topic: str) -> int | None:
        """Take ``topic`` of ``conn`` back from uWS to the Python path; returns the last seq the
        socket was given (where a catch-up starts)."""
        if conn.native_send is None or topic not in conn.topics:
            return conn.resume.seen(topic)
        if topic not in conn.python_topics:
            conn.python_topics.add(topic)
            conn.resume.advance(topic, self.published.get(topic, 0))
            with contextlib.suppress(Exception):  # broad: the socket may already be gone
                await conn.native_send({"type": "websocket.unsubscribe", "topic": topic})
        return conn.resume.seen(topic)

    async def detach(self, conn: Connection) -> None:
        """Nothing more reaches ``conn`` from uWS topics (it is being closed)."""
        for topic in list(conn.topics):
            if topic not in conn.python_topics:
                conn.python_topics.add(topic)
                with contextlib.suppress(Exception):  # broad: the socket may already be gone
                    await conn.native_send({"type": "websocket.unsubscribe", "topic": topic})  # type: ignore[misc]

    async def deliver(self, topic: str, data: str) -> int:
        members = self.topics.get(topic)
        if not members:
            return 0
        seq = frame_seq(data)
        publisher: Connection | None = None
        native: list[Connection] = []
        for conn in tuple(members):
            if conn.native_send is None:
                conn.offer(data, topic)
                continue
            if topic in conn.python_topics:
                if not conn.ready_for_native(topic, seq):
                    conn.offer(data, topic)
                    continue
                # No await that could suspend from here to the publish below: socketify's send
                # runs uWS's subscribe and publish synchronously.
                conn.python_topics.discard(topic)
                conn.resume.admit(topic, data)
                await conn.native_send({"type": "websocket.subscribe", "topic": topic})
            native.append(conn)
            publisher = conn
        if publisher is None or publisher.native_send is None:
            return len(members)
        if seq is not None and seq > self.published.get(topic, 0):
            self.published[topic] = seq
        # Any live socket of this process can publish; uWS delivers to every subscriber.
        await publisher.native_send({"type": "websocket.publish", "topic": topic, "text": data})
        # A reader falling behind is ended by the app (told slow_consumer, then bye) before uWS's
        # own backpressure limit would close it without a word.
        for conn in native:
            if not conn.overflowed and conn.backed_up():
                conn.overflowed = True
                if conn.on_overflow is not None:
                    conn.on_overflow(conn)
        return len(members)
