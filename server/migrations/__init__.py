"""Schema migrations (Alembic), the same revisions on SQLite and PostgreSQL. ``upgrade(db)``
brings a database to the newest revision at start-up."""

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from server.core.db import Database

__all__ = ["alembic_config", "upgrade"]

HERE = Path(__file__).parent


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


async def upgrade(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.run_sync(_upgrade)


def _upgrade(connection: Any) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")
