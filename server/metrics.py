"""Prometheus metrics, one registry per app so several apps can live in one process (tests)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connections = Gauge("parley_ws_connections", "open WebSocket connections", registry=self.registry)
        self.messages = Counter("parley_messages_total", "messages stored", ["sender_kind"], registry=self.registry)
        self.ack_latency = Histogram(
            "parley_ack_seconds", "time from a send frame to its ack",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.errors = Counter("parley_errors_total", "errors answered, by code", ["code"], registry=self.registry)
        self.bot_answers = Counter("parley_bot_answers_total", "AI answers posted", registry=self.registry)
        self.handoffs = Counter("parley_handoffs_total", "handoffs by reason", ["reason"], registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
