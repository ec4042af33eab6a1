"""Who is online, cluster-wide. Each node counts its own sockets per principal and tells the
other nodes over the bus (Redis when configured): a change at once, and everyone connected to it
every heartbeat. A node that stops telling (killed) is forgotten after the TTL, so its users go
offline everywhere. Reads are answered from this node's view, without a round trip."""

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from server.core.wire import TOPIC_PRESENCE
from server.fanout import Bus

__all__ = ["ClusterPresence", "Key"]

log = logging.getLogger("parley.presence")

Key = tuple[str, str, str]  # (tenant_id, role, principal id)


class ClusterPresence:
    def __init__(self, bus: Bus, *, node_id: str | None = None, heartbeat_s: float = 5.0, ttl_s: float = 15.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s <= heartbeat_s:
            raise ValueError("presence_ttl_s must be longer than presence_heartbeat_s")
        self.bus = bus
        self.node_id = node_id or uuid.uuid4().hex
        self.heartbeat_s = heartbeat_s
        self.ttl_s = ttl_s
        self.clock = clock
        self.local: dict[Key, int] = {}
        self._nodes: dict[str, tuple[float, set[Key]]] = {}  # other node -> (expires at, its principals)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.bus.listen(TOPIC_PRESENCE, self._heard)
        await self._send("sync")  # the other nodes answer with everyone connected to them
        self._task = asyncio.create_task(self._beat(), name="parley-presence")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):  # broad: a farewell on a bus that may be down; expiry covers a lost one
            await self._send("bye")

    # ---- this node's sockets -------------------------------------------------------------

    async def connected(self, key: Key) -> bool:
        """A socket of ``key`` opened here; True when it is the principal's first in the cluster."""
        first_here = key not in self.local
        was_online = self.is_online(*key)
        self.local[key] = self.local.get(key, 0) + 1
        if first_here:
            await self._send("up", [key])
        return not was_online

    async def disconnected(self, key: Key) -> bool:
        """A socket of ``key`` closed here; True when it was the principal's last in the cluster."""
        n = self.local.get(key, 0) - 1
        if n > 0:
            self.local[key] = n
            return False
        self.local.pop(key, None)
        await self._send("down", [key])
        return not self.is_online(*key)

    # ---- reads ----------------------------------------------------------------------------

    def is_online(self, tenant_id: str, role: str, principal_id: str) -> bool:
        key = (tenant_id, role, principal_id)
        if key in self.local:
            return True
        now = self.clock()
        return any(key in keys for expires, keys in self._nodes.values() if expires > now)

    def online_agents(self, tenant_id: str) -> set[str]:
        now = self.clock()
        everyone = [self.local.keys(), *(keys for expires, keys in self._nodes.values() if expires > now)]
        return {k[2] for keys in everyone for k in keys if k[0] == tenant_id and k[1] == "agent"}

    # ---- the other nodes ------------------------------------------------------------------

    async def _send(self, op: str, keys: list[Key] | None = None) -> None:
        await self.bus.publish(TOPIC_PRESENCE, json.dumps(
            {"node": self.node_id, "op": op, "keys": [list(k) for k in (keys or [])]}))

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self._send("all", list(self.local))
            except Exception:  # broad on purpose: a missed heartbeat is retried at the next one
                log.exception("presence heartbeat failed")
            now = self.clock()
            for node, (expires, _keys) in list(self._nodes.items()):
                if expires <= now:
                    del self._nodes[node]

    async def _heard(self, data: str) -> None:
        try:
            msg: dict[str, Any] = json.loads(data)
            node, op = str(msg["node"]), str(msg["op"])
            keys = {(str(t), str(r), str(p)) for t, r, p in msg.get("keys", [])}
        except (ValueError, KeyError, TypeError):
            log.warning("malformed presence frame on the bus")
            return
        if node == self.node_id:
            return
        if op == "sync":
            await self._send("all", list(self.local))
            return
        if op == "bye":
            self._nodes.pop(node, None)
            return
        _expires, known = self._nodes.get(node, (0.0, set()))
        if op == "all":
            known = keys
        elif op == "up":
            known = known | keys
        elif op == "down":
            known = known - keys
        self._nodes[node] = (self.clock() + self.ttl_s, known)
