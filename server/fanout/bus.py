"""The bus between nodes. ``MemoryBus`` is one process; ``RedisBus`` bridges Redis pub/sub
(Litestar's channels Redis backend) into the local fan-out of each node. A node subscribes to
a Redis channel only while one of its sockets needs that topic, or while it ``listen``s to a
node-to-node topic (conversation events, presence)."""

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

from server.core.events import BusRecovered, Dispatcher
from server.core.settings import Settings, default
from server.fanout.local import Connection, LocalFanout

__all__ = ["Bus", "MemoryBus", "RedisBus"]

log = logging.getLogger("parley.fanout")

Listener = Callable[[str], Awaitable[None]]


class Bus(ABC):
    def __init__(self, local: LocalFanout, events: Dispatcher | None = None) -> None:
        self.local = local
        self.events = events or Dispatcher()
        self._listeners: dict[str, list[Listener]] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def healthy(self) -> bool:
        return True

    @abstractmethod
    async def publish(self, topic: str, data: str) -> None: ...

    async def subscribe(self, conn: Connection, topic: str) -> None:
        await self.local.add(conn, topic)

    async def unsubscribe(self, conn: Connection, topic: str) -> None:
        await self.local.remove(conn, topic)

    async def drop(self, conn: Connection) -> None:
        await self.local.remove_all(conn)

    async def listen(self, topic: str, listener: Listener) -> None:
        """This node hears every frame published on ``topic`` by any node (itself included)."""
        self._listeners.setdefault(topic, []).append(listener)

    async def _heard(self, topic: str, data: str) -> None:
        for listener in self._listeners.get(topic, ()):
            try:
                await listener(data)
            except Exception:  # broad on purpose: one bad listener must not stop the bus
                log.exception("listener of %s failed", topic)


class MemoryBus(Bus):
    async def publish(self, topic: str, data: str) -> None:
        await self.local.deliver(topic, data)
        if topic in self._listeners:
            await self._heard(topic, data)


class RedisBus(Bus):
    def __init__(self, local: LocalFanout, url: str, *, prefix: str = "parley:",
                 socket_timeout_s: float = default("redis_socket_timeout_s"),
                 connect_timeout_s: float = default("redis_connect_timeout_s"),
                 op_timeout_s: float = default("redis_op_timeout_s"),
                 retry_s: float = default("redis_retry_s"),
                 events: Dispatcher | None = None) -> None:
        super().__init__(local, events)
        from litestar.channels.backends.redis import RedisChannelsPubSubBackend
        from redis.asyncio import Redis

        self._op_s, self._retry_s = op_timeout_s, retry_s
        self._redis = Redis.from_url(url, socket_timeout=socket_timeout_s, socket_connect_timeout=connect_timeout_s)
        self._backend = RedisChannelsPubSubBackend(redis=self._redis, key_prefix=prefix.rstrip(":"))
        self._task: asyncio.Task[None] | None = None
        self._health: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._wanted: set[str] = set()
        # Set when a publish or the subscription failed: messages may have been lost in between.
        self.degraded = False

    @classmethod
    def from_settings(cls, local: LocalFanout, settings: Settings) -> "RedisBus":
        assert settings.redis_url
        return cls(local, settings.redis_url, socket_timeout_s=settings.redis_socket_timeout_s,
                   connect_timeout_s=settings.redis_connect_timeout_s, op_timeout_s=settings.redis_op_timeout_s,
                   retry_s=settings.redis_retry_s)

    async def start(self) -> None:
        await self._backend.on_startup()
        self._task = asyncio.create_task(self._pump(), name="parley-redis-pump")

    async def stop(self) -> None:
        for task in (self._task, self._health):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):  # broad: the pump's own end is not stop()'s
                    await task
        with contextlib.suppress(Exception):  # broad: Redis may be down at shutdown
            await self._backend.on_shutdown()
        with contextlib.suppress(Exception):  # broad: Redis may be down at shutdown
            await self._redis.aclose()  # type: ignore[attr-defined]

    async def healthy(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self._redis.ping(), self._op_s))
        except Exception:  # noqa: BLE001 (whatever Redis raises, it is not healthy)
            return False

    async def publish(self, topic: str, data: str) -> None:
        # Losing Redis only delays delivery: clients catch up from the database on resume.
        try:
            await asyncio.wait_for(self._backend.publish(data.encode(), [topic]), self._op_s)
        except Exception as exc:  # noqa: BLE001 (whatever Redis raises, delivery degrades to database catch-up)
            log.warning("redis publish failed for %s: %s", topic, type(exc).__name__)
            self._degrade()

    def _degrade(self) -> None:
        self.degraded = True
        if self._health is None or self._health.done():
            self._health = asyncio.create_task(self._recover(), name="parley-redis-recover")

    async def _recover(self) -> None:
        """Wait for Redis to answer again, resubscribe, then let every node's sockets catch up
        from the database on what was published while it was gone (their conversation topics
        frozen meanwhile: ``ResumeState.freeze``)."""
        await self.local.freeze_all()
        while True:
            await asyncio.sleep(self._retry_s)
            if not await self.healthy():
                continue
            async with self._lock:
                try:
                    if self._wanted:
                        await asyncio.wait_for(self._backend.subscribe(list(self._wanted)), self._op_s)
                except Exception as exc:  # noqa: BLE001 (whatever Redis raises, the recovery loop tries again)
                    log.warning("redis resubscribe failed (%s); retrying", type(exc).__name__)
                    continue
            self.degraded = False
            await self.events.publish(BusRecovered())
            return

    async def subscribe(self, conn: Connection, topic: str) -> None:
        if await self.local.add(conn, topic):
            await self._want(topic)
        if self.degraded:
            await self.local.freeze(conn, topic)  # followed during the outage: caught up after it too

    async def listen(self, topic: str, listener: Listener) -> None:
        await super().listen(topic, listener)
        await self._want(topic)

    async def _want(self, topic: str) -> None:
        async with self._lock:
            self._wanted.add(topic)
            try:
                await asyncio.wait_for(self._backend.subscribe([topic]), self._op_s)
            except Exception as exc:  # noqa: BLE001 (any failure means this node misses the topic)
                # Without the subscription this node never hears the topic: recover (resubscribe
                # everything wanted) and let its sockets catch up from the database.
                log.warning("redis subscribe to %s failed: %s", topic, type(exc).__name__)
                self._degrade()

    async def unsubscribe(self, conn: Connection, topic: str) -> None:
        if await self.local.remove(conn, topic):
            await self._forget([topic])

    async def drop(self, conn: Connection) -> None:
        emptied = await self.local.remove_all(conn)
        if emptied:
            await self._forget(emptied)

    async def _forget(self, topics: list[str]) -> None:
        topics = [t for t in topics if t not in self._listeners]
        if not topics:
            return
        async with self._lock:
            self._wanted.difference_update(topics)
            with contextlib.suppress(Exception):  # broad: a lost unsubscribe leaves an unused channel
                await asyncio.wait_for(self._backend.unsubscribe(topics), self._op_s)

    async def _pump(self) -> None:
        while True:
            try:
                async for channel, payload in self._backend.stream_events():
                    data = payload.decode()
                    await self.local.deliver(channel, data)
                    if channel in self._listeners:
                        await self._heard(channel, data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 (whatever ends the stream, the bus degrades and recovers)
                log.warning("redis stream lost (%s); recovering", type(exc).__name__)
                self._degrade()
                await asyncio.sleep(self._retry_s)
