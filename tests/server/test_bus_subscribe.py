"""A Redis SUBSCRIBE that fails must not be swallowed: the node would never hear the topic and
its sockets would never catch up. The bus marks itself degraded, resubscribes what is wanted
once Redis answers, and announces the recovery so that sockets catch up from the database."""

import asyncio
import time
import uuid
from typing import Any

import pytest

from server.core.events import BusRecovered, Dispatcher
from server.fanout import Connection, PythonFanout, RedisBus
from tests.conftest import REDIS_URL


async def _until(what: str, check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        await asyncio.sleep(0.05)


@pytest.mark.usefixtures("redis_url")
async def test_a_failed_subscribe_degrades_the_bus_and_recovery_resubscribes() -> None:
    events = Dispatcher()
    recovered: list[BusRecovered] = []

    async def on_recovered(event: BusRecovered) -> None:
        recovered.append(event)

    events.subscribe(BusRecovered, on_recovered)
    bus = RedisBus(PythonFanout(), REDIS_URL, events=events)
    other = RedisBus(PythonFanout(), REDIS_URL)
    await bus.start()
    await other.start()
    try:
        real = bus._backend.subscribe
        failures = 0

        async def failing_once(channels: Any) -> None:
            nonlocal failures
            if failures == 0:
                failures += 1
                raise ConnectionError("redis went away mid-subscribe")
            await real(channels)

        bus._backend.subscribe = failing_once  # type: ignore[method-assign]
        topic = f"c:{uuid.uuid4().hex}"
        conn = Connection("c1", ("t", "user", "u"), queue_max=16)
        await bus.subscribe(conn, topic)
        assert bus.degraded, "a failed SUBSCRIBE must mark the bus degraded"
        await _until("the bus recovers", lambda: not bus.degraded)
        assert recovered == [BusRecovered()], "the recovery is announced, for the sockets' catch-up"
        # The topic is subscribed for real now: a publish from another node arrives.
        deadline = time.monotonic() + 10
        while conn.queue.empty():
            assert time.monotonic() < deadline, "the topic was never resubscribed"
            await other.publish(topic, '{"type": "typing"}')
            await asyncio.sleep(0.1)
        assert conn.queue.get_nowait() == '{"type": "typing"}'
    finally:
        await other.stop()
        await bus.stop()
