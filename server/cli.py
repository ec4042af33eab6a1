"""The ``parley`` command: serve, worker, tenant, kb and bots."""

import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from server.core.settings import Settings

if TYPE_CHECKING:
    from server.accounts.tenants import CreatedTenant
    from server.core.db import Database

__all__ = ["banner_lines", "main"]


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _database(settings: Settings) -> "Database":
    """The database with the key for secrets at rest, as the server opens it."""
    from server.core.db import Database
    from server.core.secretbox import load_or_create_key, private_dir

    private_dir(settings.data_dir)
    return Database.from_settings(settings, secret_box=load_or_create_key(settings.secret_key, settings.data_dir))


@click.group()
def main() -> None:
    """Parley: real-time conversations with an AI agent, human handoff and smart push."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
@click.option("--server", "server_kind", type=click.Choice(["socketify", "uvicorn"]), default=None)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def serve(host: str | None, port: int | None, server_kind: str | None, data_dir: Path | None) -> None:
    """Run the server (socketify by default)."""
    from server.app import create_app
    from server.realtime.serving import run_socketify, run_uvicorn

    settings = _settings(host=host, port=port, server=server_kind, data_dir=data_dir)
    import os

    app = create_app(settings, server_kind=settings.server, fault_point=os.environ.get("PARLEY_FAULT_POINT"))

    def banner() -> None:
        for line in banner_lines(settings, app.state.demo):
            click.echo(line)
        sys.stdout.flush()

    if settings.server == "uvicorn":
        app.on_startup.append(lambda: banner())
        run_uvicorn(app, settings)
    else:
        run_socketify(app, settings, on_listen=banner)


def banner_lines(settings: Settings, created: "CreatedTenant | None") -> list[str]:
    """The start-up banner. The demo admin key and the demo agent's password are shown once, on
    the start that created them; logs of later starts must not carry them again."""
    key_file = settings.data_dir / "demo-admin-key.txt"
    url = settings.public_url or f"http://{settings.host}:{settings.port}"
    lines = [f"Parley is up: {url}  (chat widget demo at {url}/, agent console at {url}/agent)"]
    agent_file = settings.data_dir / "demo-agent-login.txt"
    if created is not None:
        lines.append(f"Demo tenant admin key: {created.admin_key}  (shown once; stored in {key_file})")
    elif key_file.exists():
        lines.append(f"Demo tenant admin key: in {key_file}")
    if created is not None and created.demo_agent is not None:
        login = created.demo_agent
        lines.append(f"Demo agent login at {url}/agent: {login.email} / {login.password}  "
                     f"(shown once; stored in {agent_file})")
    elif agent_file.exists():
        lines.append(f"Demo agent login at {url}/agent: in {agent_file}")
    return lines


@main.group()
def tenant() -> None:
    """Manage tenants (businesses)."""


@tenant.command("create")
@click.argument("name")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def tenant_create(name: str, data_dir: Path | None) -> None:
    """Create a tenant and print its admin key (shown once)."""
    from server.accounts.tenants import create_tenant
    from server.migrations import upgrade

    settings = _settings(data_dir=data_dir)

    async def go() -> None:
        db = _database(settings)
        await upgrade(db)
        created = await create_tenant(db, name)
        await db.dispose()
        click.echo(f"tenant id:  {created.tenant.id}")
        click.echo(f"admin key:  {created.admin_key}")
        click.echo(f"widget key: {created.tenant.widget_key}")

    asyncio.run(go())


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def worker(data_dir: Path | None) -> None:
    """Run a push delivery worker on its own (scaled-out deployments): it claims outbox rows
    with FOR UPDATE SKIP LOCKED, so several can run beside the servers."""
    from server.migrations import upgrade
    from server.push.wiring import PushRuntime

    settings = _settings(data_dir=data_dir)

    class _NoSockets:
        # A separate worker holds no WebSockets: users count as away, so devices get the push.
        def is_online(self, *_a: Any) -> bool:
            return False

        async def deliver_to(self, *_a: Any) -> bool:
            return False

    async def go() -> None:
        import signal

        db = _database(settings)
        await upgrade(db)
        runtime = PushRuntime(db, _NoSockets(), settings.push)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        runtime.start()
        click.echo("parley worker running; Ctrl-C to stop")
        await stop.wait()
        await runtime.stop()
        await db.dispose()

    asyncio.run(go())


@click.command("export-decisions")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
@click.option("--limit", type=int, default=10000)
def export_decisions(data_dir: Path | None, limit: int) -> None:
    """Print logged handoff decisions as JSON lines, for `parley bots replay`."""
    import json

    from sqlmodel import col, select

    from server.core.db import Database
    from server.core.models import HandoffLog

    settings = _settings(data_dir=data_dir)

    async def go() -> None:
        db = Database.from_settings(settings)
        async with db.session() as s:
            rows = (await s.exec(select(HandoffLog).order_by(col(HandoffLog.id)).limit(limit))).all()
        for row in rows:
            click.echo(json.dumps(row.record, ensure_ascii=False))
        await db.dispose()

    asyncio.run(go())


def _register_groups() -> None:
    from bots.cli import bots
    from knowledge import cli as knowledge_cli
    from knowledge.cli import kb

    def extractive_answerer(service: Any, kb_id: str) -> Any:
        from server.agent.knowledge import extractive_answerer

        return extractive_answerer(service, kb_id)

    knowledge_cli.ANSWERER_FACTORY = extractive_answerer

    bots.add_command(export_decisions)
    main.add_command(bots)
    main.add_command(kb)


_register_groups()

if __name__ == "__main__":
    main()
