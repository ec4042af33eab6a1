"""Creating tenants (a business) and the demo tenant of the first start."""

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import select

from server.accounts.auth import hash_admin_key, new_admin_key, new_signing_secret, new_widget_key
from server.accounts.passwords import PasswordHashing, check_password_policy
from server.core.db import Database
from server.core.models import Agent, Bot, Tenant
from server.core.secretbox import write_private_file

__all__ = ["DEMO_AGENT_EMAIL", "DEMO_AGENT_FILE", "CreatedTenant", "DemoAgentLogin", "create_tenant",
           "ensure_demo_tenant"]

DEMO_AGENT_EMAIL = "demo.agent@example.com"
#: in the data dir, readable by the owner only: the demo agent's email and generated password
DEMO_AGENT_FILE = "demo-agent-login.txt"


@dataclass(frozen=True)
class DemoAgentLogin:
    agent_id: str
    email: str
    password: str


@dataclass(frozen=True)
class CreatedTenant:
    tenant: Tenant
    admin_key: str
    bot: Bot
    demo_agent: DemoAgentLogin | None = None


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


async def ensure_demo_tenant(db: Database, data_dir: Path, *,
                             hash_password: Callable[[str], Awaitable[str]] | None = None,
                             min_password_length: int = 10) -> CreatedTenant | None:
    """On the first start with an empty database, create the demo tenant and its demo agent, and
    write the admin key and the agent's login to the data dir (readable by the owner only)."""
    async with db.session() as s:
        if (await s.exec(select(Tenant).limit(1))).first() is not None:
            return None
    created = await create_tenant(db, "Demo")
    write_private_file(data_dir / "demo-admin-key.txt", created.admin_key + "\n")
    # the widget key is public by design (it sits in the page that embeds the widget)
    (data_dir / "demo-widget-key.txt").write_text(created.tenant.widget_key + "\n")
    login = await _create_demo_agent(db, created.tenant, data_dir, hash_password or PasswordHashing().hash,
                                     min_password_length)
    return CreatedTenant(created.tenant, created.admin_key, created.bot, login)


async def _create_demo_agent(db: Database, tenant: Tenant, data_dir: Path,
                             hash_password: Callable[[str], Awaitable[str]], min_length: int) -> DemoAgentLogin:
    """One agent so a newcomer can open /agent at once; its password is generated, never fixed."""
    name = "Demo Agent"
    password = secrets.token_urlsafe(max(12, min_length))  # 16+ characters from 96+ random bits
    check_password_policy(password, min_length=min_length, email=DEMO_AGENT_EMAIL, name=name)
    password_hash = await hash_password(password)
    async with db.write() as s:
        agent = Agent(tenant_id=tenant.id, name=name, email=DEMO_AGENT_EMAIL, password_hash=password_hash)
        s.add(agent)
    write_private_file(data_dir / DEMO_AGENT_FILE, f"email: {DEMO_AGENT_EMAIL}\npassword: {password}\n")
    return DemoAgentLogin(agent.id, DEMO_AGENT_EMAIL, password)
