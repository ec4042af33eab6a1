"""Schema migrations (Alembic). ``upgrade(db)`` brings a database to the newest revision."""

from pathlib import Path

from server.db import Database

__all__ = ["upgrade"]

HERE = Path(__file__).parent


async def upgrade(db: Database) -> None:
    await db.create_all()
