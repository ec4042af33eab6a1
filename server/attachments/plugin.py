"""Attachments wire themselves into the app, as a Litestar plugin: their routes, the
``attachments`` dependency, and closing the storage at shutdown."""

from typing import Any

from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.plugins import InitPluginProtocol

from server.attachments.routes import attachment_handlers
from server.attachments.s3 import S3Storage, s3_client
from server.attachments.service import AttachmentService
from server.attachments.settings import attachment_settings_from
from server.attachments.storage import LocalStorage, Storage
from server.core.db import Database

__all__ = ["AttachmentsPlugin", "build_storage"]


def build_storage(settings: Any) -> Storage:
    if settings.attachment_storage == "s3":
        if not settings.attachment_s3_bucket:
            raise ValueError("PARLEY_ATTACHMENT_S3_BUCKET is required with PARLEY_ATTACHMENT_STORAGE=s3")
        client = s3_client(endpoint_url=settings.attachment_s3_endpoint_url, region=settings.attachment_s3_region,
                           access_key=settings.attachment_s3_access_key,
                           secret_key=settings.attachment_s3_secret_key)
        return S3Storage(client, settings.attachment_s3_bucket)
    return LocalStorage(settings.data_dir / "attachments")


class AttachmentsPlugin(InitPluginProtocol):
    def __init__(self, db: Database, settings: Any, storage: Storage | None = None) -> None:
        self.service = AttachmentService(db, storage or build_storage(settings), attachment_settings_from(settings))

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers.extend(attachment_handlers(self.service.settings.max_file_bytes))
        app_config.dependencies["attachment_service"] = Provide(lambda: self.service, sync_to_thread=False)
        app_config.on_shutdown.append(self.service.storage.close)
        return app_config
