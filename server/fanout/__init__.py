"""Fan-out: the bus that carries committed events between nodes (in-process or Redis) and the
local delivery to this node's sockets (Python queues or socketify's native uWS topics). The
database stays the source of truth; this is only an accelerator."""

from server.fanout.bus import Bus, MemoryBus, RedisBus
from server.fanout.local import Connection, LocalFanout, NativeFanout, PythonFanout, SendQueue

__all__ = ["Bus", "Connection", "LocalFanout", "MemoryBus", "NativeFanout", "PythonFanout", "RedisBus", "SendQueue"]
