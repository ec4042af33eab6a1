"""Prometheus metrics, one registry per app so several apps can live in one process (tests).

``/metrics`` is for the operator and holds no tenant data: no tenant ids, and labels only from
fixed sets (a handoff reason a user typed would put one tenant's users' words on every tenant's
dashboard, and grow a new series per sentence). What a tenant's admin dashboard shows comes from
``TenantFigures`` through an authenticated route.
"""

from collections import Counter as Tally
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["HANDOFF_REASONS", "Metrics", "TenantFigures", "handoff_label"]

# The handoff policy's reason codes (bots/handoff.py) and the REST/frame requests
# (server/api/conversations.py: "<role>_request"). Anything else is "other".
HANDOFF_REASONS = frozenset({
    "circuit_open", "provider_error", "user_request", "offer_accepted", "human_only_topic", "vip",
    "frustration", "repeated_question", "didnt_help", "no_evidence", "no_evidence_after_offer",
    "agent_request", "admin_request", "requested",
    "safety", "legal", "callback_request", "repeated_failure", "learned", "tenant_rule",
})


def handoff_label(reason: str | None) -> str:
    # A tenant's own rule ("rule:<name>") is one label: rule names are tenant data.
    if reason is not None and reason.startswith("rule:"):
        return "tenant_rule"
    return reason if reason in HANDOFF_REASONS else "other"


class TenantFigures:
    """Per-tenant counts since this process started, for that tenant's dashboard only. Bounded:
    the least recently active tenants are forgotten past ``max_tenants``."""

    def __init__(self, max_tenants: int = 10_000) -> None:
        self.max_tenants = max_tenants
        self.since = datetime.now(UTC)
        self._t: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def _of(self, tenant_id: str) -> dict[str, Any]:
        row = self._t.get(tenant_id)
        if row is None:
            row = {"bot_answers": 0, "handoffs": Tally()}
            self._t[tenant_id] = row
            while len(self._t) > self.max_tenants:
                self._t.popitem(last=False)
        else:
            self._t.move_to_end(tenant_id)
        return row

    def handoff(self, tenant_id: str, reason: str | None) -> None:
        self._of(tenant_id)["handoffs"][handoff_label(reason)] += 1

    def bot_answer(self, tenant_id: str) -> None:
        self._of(tenant_id)["bot_answers"] += 1

    def snapshot(self, tenant_id: str) -> dict[str, Any]:
        row = self._t.get(tenant_id) or {"bot_answers": 0, "handoffs": Tally()}
        return {"since": self.since.isoformat(), "bot_answers": row["bot_answers"],
                "handoffs": dict(sorted(row["handoffs"].items()))}


class Metrics:
    def __init__(self, *, max_tenants: int = 10_000) -> None:
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
        self.handoffs = Counter("parley_handoffs_total", "handoffs by reason code", ["reason"],
                                registry=self.registry)
        self.tenants = TenantFigures(max_tenants)

    def handoff(self, tenant_id: str, reason: str) -> None:
        """A conversation went to the queue of human agents, for this reason code."""
        self.handoffs.labels(handoff_label(reason)).inc()
        self.tenants.handoff(tenant_id, reason)

    def bot_answered(self, tenant_id: str) -> None:
        self.bot_answers.inc()
        self.tenants.bot_answer(tenant_id)

    def render(self) -> bytes:
        return generate_latest(self.registry)
