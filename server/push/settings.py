"""Every limit of the push engine, as one frozen dataclass with safe defaults. The composition
root builds it (from ``server.core.settings.Settings`` or the environment); nothing here reads the
environment."""

from dataclasses import dataclass, fields
from typing import Any

__all__ = ["PushSettings", "push_settings_from"]


@dataclass(frozen=True, slots=True)
class PushSettings:
    # ingestion
    max_batch: int = 1000
    max_properties_bytes: int = 8 * 1024
    max_name_chars: int = 100
    max_id_chars: int = 200
    # an occurred_at further in the future than this is clamped to "now" (client clocks lie)
    max_clock_skew_s: int = 300

    # frequency budget: one per user across every channel (in-app included)
    budget_count: int = 5
    budget_window_s: int = 24 * 3600
    # categories that never consume or respect the budget (receipts, password resets)
    budget_exempt_categories: tuple[str, ...] = ("transactional",)

    # support awareness
    bad_rating_days: int = 14
    bad_rating_max: int = 2  # a rating <= this (1..5) is "bad"
    rating_event: str = "conversation.rated"

    # best time: how much history to learn the active hour from
    best_time_history: int = 500
    best_time_min_samples: int = 3

    # conversion attribution: a goal event within this of the notification counts
    conversion_window_s: int = 7 * 24 * 3600

    # templates
    max_title_chars: int = 120
    max_body_chars: int = 500
    max_url_chars: int = 2000
    copywriter_timeout_s: float = 2.0
    # template work (server.push.template_sandbox): sizes, steps and time one render may use
    template_max_source_chars: int = 2000
    template_max_value_chars: int = 16_000
    template_max_output_chars: int = 16_000
    template_max_iterations: int = 2_000
    template_max_range: int = 1_000
    template_max_int_bits: int = 256
    template_budget_s: float = 0.25
    template_batch_budget_s: float = 2.0  # all renders of one event batch, in one transaction
    template_threads: int = 2

    # rules
    max_rules_per_tenant: int = 500
    max_wait_s: int = 30 * 24 * 3600
    max_condition_nodes: int = 64
    max_condition_depth: int = 8

    # chat-derived notifications
    chat_reply_delay_s: int = 60
    chat_reply_max_chars: int = 180

    # worker / delivery
    worker_batch: int = 100
    worker_poll_s: float = 0.2
    worker_lease_s: float = 60.0
    worker_concurrency: int = 32
    max_attempts: int = 8
    backoff_base_s: float = 2.0
    backoff_max_s: float = 3600.0
    max_retry_after_s: float = 24 * 3600.0
    provider_timeout_s: float = 10.0
    webpush_ttl_s: int = 24 * 3600
    webpush_max_payload_bytes: int = 4096
    vapid_subject: str = "mailto:push@parley.invalid"
    vapid_token_ttl_s: int = 12 * 3600
    apns_token_ttl_s: int = 50 * 60  # Apple rejects provider tokens older than one hour
    webhook_tolerance_s: int = 300
    # egress (server.push.egress): hosts trusted beyond the known push services (exact, or
    # "*.example.com" for subdomains, any port); http and loopback only for local test servers
    egress_hosts: tuple[str, ...] = ()
    egress_allow_http: bool = False
    egress_allow_loopback: bool = False
    config_cache_s: float = 10.0


def push_settings_from(settings: Any) -> PushSettings:
    """The app's ``push_<name>`` settings onto the push engine's fields of the same name."""
    values: dict[str, Any] = {}
    for f in fields(PushSettings):
        v = getattr(settings, f"push_{f.name}", None)
        if v is not None:
            values[f.name] = tuple(v) if isinstance(v, list) else v
    return PushSettings(**values)
