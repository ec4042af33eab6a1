"""Creating tenants (a business) and the demo tenant of the first start."""

from dataclasses import dataclass
from pathlib import Path

from sqlmodel import select

from server.accounts.auth import hash_admin_key, new_admin_key, new_signing_secret, new_widget_key
from server.core.db import Database
from server.core.models import Bot, Tenant
from server.core.secretbox import write_private_file

__all__ = ["CreatedTenant", "create_tenant", "ensure_demo_tenant"]


@dataclass(frozen=True)
class CreatedTenant:
    tenant: Tenant
    admin_key: str
    bot: Bot


async def create_tenant(db: Database, name: str, *, reopen_cooldown_s: int = 600,
                        allowed_origins: list[str] | None = None) -> CreatedTenant:
    key = new_admin_key()
    async with db.write() as s:
        tenant = Tenant(name=name, admin_key_hash=hash_admin_key(key), signing_secret=new_signing_secret(),
                        widget_key=new_widget_key(), reopen_cooldown_s=reopen_cooldown_s,
                        allowed_origins=allowed_origins or [])
        s.add(tenant)
        await s.flush()
        bot = Bot(tenant_id=tenant.id, name=f"{name} assistant", is_default=True)
        s.add(bot)
    return CreatedTenant(tenant, key, bot)


async def ensure_demo_tenant(db: Database, data_dir: Path) -> CreatedTenant | None:
    """On the first start with an empty database, create the demo tenant and write its admin
    key to the data dir (readable by the owner only)."""
    async with db.session() as s:
        if (await s.exec(select(Tenant).limit(1))).first() is not None:
            return None
    created = await create_tenant(db, "Demo")
    write_private_file(data_dir / "demo-admin-key.txt", created.admin_key + "\n")
    # the widget key is public by design (it sits in the page that embeds the widget)
    (data_dir / "demo-widget-key.txt").write_text(created.tenant.widget_key + "\n")
    return created
