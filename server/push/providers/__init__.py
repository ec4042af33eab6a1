"""Delivery providers: Web Push (VAPID, RFC 8291), FCM HTTP v1, APNs (HTTP/2) and a signed
webhook, each sending through an injected ``httpx.AsyncClient`` and answering a ``DeliveryResult``."""

from server.push.providers.apns import ApnsProvider
from server.push.providers.base import DeliveryResult, DeviceTarget, Provider, PushMessage
from server.push.providers.fcm import FcmProvider
from server.push.providers.webhook import WebhookProvider
from server.push.providers.webpush import WebPushProvider

__all__ = [
    "ApnsProvider",
    "DeliveryResult",
    "DeviceTarget",
    "FcmProvider",
    "Provider",
    "PushMessage",
    "WebPushProvider",
    "WebhookProvider",
]
