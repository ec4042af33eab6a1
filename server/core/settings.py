"""The one settings object. Only the composition root and the CLI build it from the environment."""

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["PushSettings", "Settings", "default"]


class PushSettings(BaseModel):
    """Every limit of the push engine (``server.push``), with safe defaults: the ``push`` field of
    :class:`Settings`, so ``PARLEY_PUSH__<NAME>`` sets one (``PARLEY_PUSH__MAX_ATTEMPTS=3``,
    ``PARLEY_PUSH__EGRESS_HOSTS='["push.example.com"]'``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

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
    # the decision looks at this many of a user's most recent notifications (caps, best time)
    max_recent_sends: int = 1000

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
    # a reply the user has not read on any socket this long after it was sent becomes a notification
    chat_reply_delay_s: float = 60.0
    chat_reply_max_chars: int = 180

    # worker / delivery
    worker_batch: int = 100
    worker_poll_s: float = 0.2
    worker_lease_s: float = 60.0
    worker_concurrency: int = 32
    worker_stop_s: float = 5.0  # at shutdown, the batch in hand may take this long to finish
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
    # egress (server.push.egress): hosts trusted beyond the known push services (exact, or
    # "*.example.com" for subdomains, any port); http and loopback only for local test servers
    egress_hosts: tuple[str, ...] = ()
    egress_allow_http: bool = False
    egress_allow_loopback: bool = False
    egress_max_connections: int = 100  # per provider client
    egress_max_keepalive: int = 20
    config_cache_s: float = 10.0


def default(name: str) -> Any:
    """The default of one :class:`Settings` field, for a constructor that tests call bare."""
    return Settings.model_fields[name].default


class Settings(BaseSettings):
    """Every limit has a safe default; `PARLEY_<NAME>` overrides it."""

    model_config = SettingsConfigDict(env_prefix="PARLEY_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Path("data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default is a SQLite file in the data dir"
    )
    redis_url: str | None = Field(default=None, description="enables the Redis fan-out bus for several nodes")
    chroma_url: str | None = None
    embedder: Literal["use", "minilm"] = Field(
        default="use",
        description="offline embedding model of new knowledge bases: multilingual USE (EN+ZH) or English MiniLM",
    )
    # A knowledge base built with another embedder is re-embedded from its stored chunk texts when
    # first opened if true; when false it is refused with a ModelMismatch naming both models.
    reembed_on_mismatch: bool = True
    host: str = "127.0.0.1"
    port: int = 8000
    server: Literal["socketify", "uvicorn"] = "socketify"
    public_url: str | None = None
    demo: bool = True
    demo_knowledge: bool = True

    # WebSocket protocol limits
    hello_timeout_s: float = 10.0
    max_frame_bytes: int = 65536
    # Frames above this are refused by the transport from their header, before they are buffered
    # (uvicorn then sends a fatal too_long and bye; uWS closes at once, in C++, with no frame);
    # between max_frame_bytes and this the app answers too_long and the socket stays. 0: twice
    # max_frame_bytes.
    max_transport_frame_bytes: int = 0
    max_text_chars: int = 4000
    max_json_depth: int = 32
    send_queue_max: int = 512
    max_connections_per_user: int = 10
    rate_per_connection: float = 10.0
    burst_per_connection: int = 30
    rate_per_user: float = 20.0
    burst_per_user: int = 60
    rate_per_tenant: float = Field(default=1000.0, description="messages per second of a whole tenant")
    burst_per_tenant: int = 5000
    rate_replay_per_user: float = Field(default=500.0, description="messages per second replayed by subscribe")
    burst_replay_per_user: int = 5000
    max_pending_handshakes_per_ip: int = Field(default=50, description="open sockets that have not said hello")
    rate_widget_sessions_per_ip: float = Field(default=0.5, description="new anonymous visitors per second")
    burst_widget_sessions_per_ip: int = 60
    rate_widget_sessions_per_tenant: float = 20.0
    burst_widget_sessions_per_tenant: int = 500
    ratelimit_backend: Literal["auto", "memory", "redis"] = Field(
        default="auto", description="auto: shared through Redis when redis_url is set, else per node")
    ratelimit_max_keys: int = 100_000
    trusted_proxy_hops: int = Field(
        default=0, description="reverse proxies in front that append to X-Forwarded-For (0: use the peer address)")
    max_subscriptions: int = 500
    replay_batch: int = 500
    replay_stall_s: float = 10.0
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="browser origins allowed on /v1/ws; empty means same host only; '*' allows all",
    )
    shutdown_drain_s: float = 5.0
    ws_close_timeout_s: float = 1.0  # a close the server starts, once its error/bye frames are out
    ws_ping_interval_s: float = 20.0  # uvicorn: protocol pings; a peer that misses one is closed
    ws_idle_timeout_s: int = 60  # socketify: a socket silent this long is closed (uWS needs >= 8)
    ws_max_backpressure_bytes: int = 4 * 1024 * 1024  # socketify: native fan-out a reader may lag
    presence_max_conversations: int = 50  # a user's presence reaches the agents of this many conversations
    # How long a session the server ends may take to get its error and bye frames out: a slow
    # consumer's socket is full until it reads again, and the frames saying why must still reach it.
    goodbye_send_timeout_s: float = 5.0
    # Presence across nodes: each node tells the others who is connected to it every heartbeat;
    # a node silent for the TTL (killed) is forgotten, so its users count as offline.
    presence_heartbeat_s: float = Field(default=5.0, gt=0)
    presence_ttl_s: float = Field(default=15.0, gt=0)

    # auth
    token_ttl_s: int = 3600
    max_token_ttl_s: int = 7 * 24 * 3600
    widget_token_ttl_s: int = 24 * 3600
    # the longest lifetime (exp - iat, and exp - now) a token may have; a tenant may set its own
    user_token_max_ttl_s: int = 7 * 24 * 3600
    agent_token_max_ttl_s: int = 12 * 3600
    min_password_length: int = 10
    max_teams_per_tenant: int = 200
    # the desk: canned responses per owner (the tenant, or one agent) and a response's length
    max_canned_responses_per_owner: int = 500
    canned_response_max_chars: int = 5000
    max_labels_per_tenant: int = 200
    # CSAT: the widget's default wording (a tenant may set its own) and a comment's length
    csat_question: str = Field(default="How would you rate this conversation?", max_length=300)
    csat_thanks: str = Field(default="Thank you for your feedback!", max_length=300)
    csat_comment_max_chars: int = Field(default=1000, ge=0)
    # agents' search over the tenant's messages: a query's length and words, and results per request
    search_max_query_chars: int = Field(default=200, ge=1)
    search_max_terms: int = Field(default=8, ge=1)
    search_max_results: int = Field(default=50, ge=1)
    # messages people expect (server.chat): how long a sender may edit or delete a message, and
    # the emoji a reaction may be (a bounded allow-list; anything else is refused)
    message_edit_window_s: int = Field(default=900, ge=0, description="seconds after sending that its sender "
                                       "may edit or delete a message")
    reaction_emojis: list[str] = Field(
        default_factory=lambda: ["👍", "👎", "❤️", "😂", "😮", "😢", "🎉", "🙏", "✅", "👀"],
        max_length=64, description="the emoji a reaction may be, each at most 32 characters")
    # private notes: agents one note may @mention, and the page of an agent's mentions
    note_max_mentions: int = Field(default=20, ge=1)
    mentions_page_max: int = Field(default=100, ge=1)
    # snooze: the furthest ahead a conversation may be snoozed, and how often the waker looks
    snooze_max_s: int = Field(default=30 * 86400, ge=60)
    snooze_poll_s: float = Field(default=15.0, gt=0)
    # routing of handoffs: rules per tenant, and how many recent user messages a topic rule reads
    max_routing_rules_per_tenant: int = Field(default=100, ge=1)
    routing_topic_messages: int = Field(default=5, ge=1)
    password_hash_concurrency: int = 2
    password_hash_queue_max: int = 64
    login_rate_per_ip: float = 0.2
    login_burst_per_ip: int = 20
    login_rate_per_account: float = 0.1
    login_burst_per_account: int = 10
    login_lockout_failures: int = 10
    login_lockout_window_s: float = 900.0
    login_lockout_s: float = 900.0
    login_guard_max_keys: int = 100_000
    secret_key: str | None = Field(
        default=None,
        description="key that encrypts secrets at rest (urlsafe base64 of 32 bytes); "
        "unset: generated into <data_dir>/secret.key on first start",
    )

    # REST limits
    max_request_bytes: int = 1024 * 1024
    max_upload_bytes: int = 20 * 1024 * 1024
    max_multipart_parts: int = 16
    history_page_max: int = 200

    # attachments (server.attachments.settings.AttachmentSettings): files and images in messages
    attachment_storage: Literal["local", "s3"] = Field(
        default="local", description="local: files under <data_dir>/attachments; s3: an S3-compatible bucket")
    attachment_s3_bucket: str | None = None
    attachment_s3_endpoint_url: str | None = Field(default=None, description="MinIO, Ceph, R2...; unset: AWS")
    attachment_s3_region: str = "us-east-1"
    attachment_s3_access_key: str | None = None
    attachment_s3_secret_key: str | None = None
    attachment_max_file_bytes: int = Field(default=10 * 1024 * 1024, description="largest single upload")
    attachment_max_tenant_bytes: int = Field(default=1024 * 1024 * 1024, description="all of a tenant's files")
    attachment_max_image_pixels: int = Field(default=40_000_000, description="width x height; more is a bomb")
    attachment_thumbnail_px: int = 320
    attachment_max_per_message: int = 10
    attachment_allowed_types: list[str] = Field(
        default_factory=lambda: ["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf",
                                 "text/plain"],
        description="media types sniffed from the bytes that may be uploaded")

    # conversations
    reopen_cooldown_s: int = 600
    # the queue: how many waiting conversations one assignment round offers, how many waiting
    # users are told their place, and the first estimate of the wait per place
    queue_assign_batch: int = Field(default=50, ge=1)
    queue_publish_max: int = Field(default=500, ge=1)
    queue_eta_per_position_s: int = Field(default=120, ge=0)
    # /metrics and /v1/admin/stats keep figures for at most this many tenants (least recent dropped)
    metrics_max_tenants: int = Field(default=10_000, ge=1)

    # outbox workers (server.core.outbox): how often an idle worker looks, and each topic's
    # lease, batch, concurrency and retry policy (attempts, then dead letter; backoff with jitter)
    outbox_poll_s: float = Field(default=0.5, gt=0)
    bot_outbox_batch: int = Field(default=20, ge=1)
    bot_outbox_concurrency: int = Field(default=8, ge=1)
    bot_outbox_lease_s: float = Field(default=60.0, gt=0)
    bot_outbox_max_attempts: int = Field(default=3, ge=1)
    bot_outbox_backoff_base_s: float = Field(default=0.5, ge=0)
    bot_outbox_backoff_max_s: float = Field(default=10.0, ge=0)
    ingest_outbox_lease_s: float = Field(default=600.0, gt=0)
    ingest_outbox_max_attempts: int = Field(default=3, ge=1)
    ingest_outbox_backoff_base_s: float = Field(default=5.0, ge=0)
    ingest_outbox_backoff_max_s: float = Field(default=300.0, ge=0)
    bot_history_turns: int = 20  # recent messages given to the AI agent (and to copilot drafts)
    suggestion_count: int = 3  # copilot drafts per request
    db_pool_size: int = 10
    db_pool_timeout_s: float = 5.0  # PostgreSQL: wait for a pooled connection, then "unavailable"
    db_connect_timeout_s: float = 5.0
    db_statement_timeout_s: float = 10.0  # PostgreSQL: asyncpg's command timeout
    db_lock_timeout_s: float = 30.0  # SQLite: wait for the writer lock
    db_ping_timeout_s: float = 2.0  # /readyz
    # Group commit (server.chat.writer): concurrent sends share one transaction of up to this many
    # messages, each acked after that commit; a batch closes after at most this wait (0: take what
    # is queued after one event-loop step; under load the next batch fills while one commits).
    write_batch_max: int = Field(default=256, ge=1, le=5000)
    write_batch_wait_us: int = Field(default=0, ge=0, le=100_000)
    # PostgreSQL: batches committing at once (SQLite has one writer: always 1).
    write_batches_in_flight: int = Field(default=4, ge=1, le=32)
    redis_socket_timeout_s: float = 5.0
    redis_connect_timeout_s: float = 2.0
    redis_op_timeout_s: float = 2.0  # one publish, (un)subscribe or health ping of the bus
    redis_retry_s: float = 0.5  # between attempts to reach Redis again after it was lost
    ratelimit_redis_timeout_s: float = 1.0  # a rate-limit check waits no longer for Redis ...
    ratelimit_redis_retry_s: float = 5.0  # ... and after a failure Redis is left alone this long

    # AI agent
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    llm_model: str = "gpt-4o-mini"
    llm_timeout_s: float = 20.0
    llm_max_retries: int = 1
    llm_max_tokens: int = 512
    answer_deadline_s: float = 15.0
    # the output guard refuses other tenants' prompt canaries in an answer (a cross-tenant leak):
    # how often the list is reloaded, and how many of the newest tenants it holds at most
    canary_refresh_s: float = Field(default=60.0, gt=0)
    foreign_canaries_max: int = Field(default=10_000, ge=0)

    # push: every limit of the push engine (PushSettings above), PARLEY_PUSH__<NAME>
    push: PushSettings = Field(default_factory=PushSettings)

    # /metrics: when set, scrapers must send `Authorization: Bearer <token>`
    metrics_token: str | None = None

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'parley.db').resolve()}"

    @property
    def transport_frame_bytes(self) -> int:
        return max(self.max_transport_frame_bytes or 2 * self.max_frame_bytes, self.max_frame_bytes)

    @property
    def ws_slow_reader_bytes(self) -> int:
        """What uWS may hold unsent for one socket before the app ends it as a slow consumer:
        below uWS's own limit by room for a few more frames, and for the error and bye frames."""
        return max(self.ws_max_backpressure_bytes - 4 * self.transport_frame_bytes, self.ws_max_backpressure_bytes // 2)

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url().startswith("sqlite")
