"""Accounts as a Litestar plugin: password hashing (warmed in the background at start-up) and
the login guard, by name."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.plugins import InitPluginProtocol

from server.accounts.login_guard import LoginGuard, login_limits
from server.accounts.passwords import PasswordHashing
from server.core.plugin import Background, provide
from server.core.settings import Settings

__all__ = ["AccountsPlugin"]


class AccountsPlugin(InitPluginProtocol):
    def __init__(self, settings: Settings, background: Background) -> None:
        self.background = background
        self.passwords = PasswordHashing(settings.password_hash_concurrency, settings.password_hash_queue_max)
        self.login_guard = LoginGuard(login_limits(settings))

    @asynccontextmanager
    async def _lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        self.background.spawn(self.passwords.warm(), name="parley-password-warm")
        yield

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.state.update(passwords=self.passwords, login_guard=self.login_guard)
        app_config.dependencies.update(passwords=provide(self.passwords), login_guard=provide(self.login_guard))
        app_config.lifespan.append(self._lifespan)
        return app_config
