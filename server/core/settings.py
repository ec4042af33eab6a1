"""The one settings object. Only the composition root and the CLI build it from the environment."""

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


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
    history_page_max: int = 200

    # conversations
    reopen_cooldown_s: int = 600

    # workers
    outbox_poll_s: float = 0.2
    outbox_batch: int = 100
    db_pool_size: int = 10

    # AI agent
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    llm_model: str = "gpt-4o-mini"
    llm_timeout_s: float = 20.0
    llm_max_retries: int = 1
    llm_max_tokens: int = 512
    answer_deadline_s: float = 15.0

    # push (server.push.settings.PushSettings): a `push_<name>` here overrides that field
    push_egress_hosts: list[str] = Field(
        default_factory=list,
        description="hosts trusted as push endpoints beyond the known push services ('*.example.com' too)",
    )
    push_egress_allow_http: bool = False
    push_egress_allow_loopback: bool = False
    push_template_max_source_chars: int = 2000
    push_template_max_output_chars: int = 16_000
    push_template_max_iterations: int = 2_000
    push_template_budget_s: float = 0.25

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
    def is_sqlite(self) -> bool:
        return self.resolved_database_url().startswith("sqlite")
