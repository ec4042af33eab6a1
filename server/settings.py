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
    host: str = "127.0.0.1"
    port: int = 8000
    server: Literal["socketify", "uvicorn"] = "socketify"
    public_url: str | None = None
    demo: bool = True
    demo_knowledge: bool = True

    # WebSocket protocol limits
    hello_timeout_s: float = 10.0
    max_frame_bytes: int = 65536
    max_text_chars: int = 4000
    max_json_depth: int = 32
    send_queue_max: int = 512
    max_connections_per_user: int = 10
    rate_per_connection: float = 10.0
    burst_per_connection: int = 30
    rate_per_user: float = 20.0
    burst_per_user: int = 60
    max_subscriptions: int = 500
    replay_batch: int = 500
    replay_stall_s: float = 10.0
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="browser origins allowed on /v1/ws; empty means same host only; '*' allows all",
    )
    shutdown_drain_s: float = 5.0

    # auth
    token_ttl_s: int = 3600
    max_token_ttl_s: int = 7 * 24 * 3600
    widget_token_ttl_s: int = 24 * 3600

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

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'parley.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url().startswith("sqlite")
