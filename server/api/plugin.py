"""The REST API as a Litestar plugin: its handlers, the authenticated ``principal`` by name, and
the check that a body declares its media type."""

from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.plugins import InitPluginProtocol

from server.api.agents import agent_handlers
from server.api.auth import auth_handlers
from server.api.bots import bot_handlers
from server.api.conversations import conversation_handlers
from server.api.deps import get_principal
from server.api.desk_ops import desk_ops_handlers
from server.api.health import health_handlers
from server.api.knowledge_bases import knowledge_handlers
from server.api.media import require_declared_body_type
from server.api.messages import message_handlers
from server.api.mfa import mfa_handlers
from server.api.people import people_handlers
from server.api.stats import stats_handlers
from server.api.teams import team_handlers

__all__ = ["ApiPlugin"]


class ApiPlugin(InitPluginProtocol):
    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers.extend([*health_handlers, *auth_handlers, *people_handlers,
                                          *conversation_handlers, *knowledge_handlers, *mfa_handlers, *bot_handlers,
                                          *stats_handlers, *agent_handlers, *team_handlers, *message_handlers,
                                          *desk_ops_handlers])
        app_config.dependencies["principal"] = Provide(get_principal)
        app_config.before_request = require_declared_body_type
        return app_config
