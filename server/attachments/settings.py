"""Every limit of attachments, as one frozen dataclass with safe defaults. The composition root
builds it from ``server.core.settings.Settings`` (``PARLEY_ATTACHMENT_*``)."""

from dataclasses import dataclass, field
from typing import Any

__all__ = ["AttachmentSettings", "attachment_settings_from"]

DEFAULT_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain")


@dataclass(frozen=True, slots=True)
class AttachmentSettings:
    max_file_bytes: int = 10 * 1024 * 1024
    max_tenant_bytes: int = 1024 * 1024 * 1024
    # width x height of an image before it is decoded: a few KB of PNG can claim gigapixels
    max_image_pixels: int = 40_000_000
    thumbnail_px: int = 320
    max_per_message: int = 10
    allowed_types: tuple[str, ...] = field(default=DEFAULT_TYPES)
    max_name_chars: int = 200


def attachment_settings_from(settings: Any) -> AttachmentSettings:
    return AttachmentSettings(
        max_file_bytes=settings.attachment_max_file_bytes,
        max_tenant_bytes=settings.attachment_max_tenant_bytes,
        max_image_pixels=settings.attachment_max_image_pixels,
        thumbnail_px=settings.attachment_thumbnail_px,
        max_per_message=settings.attachment_max_per_message,
        allowed_types=tuple(settings.attachment_allowed_types),
    )
