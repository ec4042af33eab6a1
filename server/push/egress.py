"""Where the push engine may send requests: known push-service hosts (plus an operator's list)
for Web Push endpoints and FCM token URIs, any public host for a tenant's webhook, and never a
non-global address.

Two gates, because a visitor picks the endpoint URL:

* ``EgressPolicy.check_url`` (no DNS) refuses a bad scheme, userinfo, an unknown host or an odd
  port. Providers call it before every send; registration and configuration call
  ``check_resolved`` as well, which resolves the name and classifies every answer.
* ``GuardedTransport`` resolves the name again when it opens a connection, classifies every
  answer and connects to the checked address itself, so a DNS answer that changed since
  registration (rebinding) cannot aim the request at loopback, the metadata service or the
  private network. TLS still verifies the certificate against the host name.

Address classification is knowledge URL fetching's (``knowledge.fetch.check_address``), so the
two egress paths cannot drift apart.
"""

import asyncio
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import httpcore
import httpx
from httpcore import AsyncNetworkBackend, AsyncNetworkStream
from httpcore._backends.auto import AutoBackend

from knowledge.errors import UnsafeURL
from knowledge.fetch import Resolver, check_address, system_resolver
from knowledge.settings import KnowledgeSettings
from server.core.settings import PushSettings

__all__ = [
    "FCM_TOKEN_HOSTS",
    "WEBPUSH_HOSTS",
    "EgressPolicy",
    "EgressRefused",
    "GuardedTransport",
    "Purpose",
    "Unresolved",
]

Purpose = Literal["webpush", "fcm_token", "webhook"]

# The push services browsers hand out endpoints for (Chrome/Edge/Opera/Samsung via FCM, Firefox,
# Safari, Windows). A leading "*." matches any subdomain, not the bare name.
WEBPUSH_HOSTS: tuple[str, ...] = (
    "fcm.googleapis.com",
    "android.googleapis.com",
    "updates.push.services.mozilla.com",
    "*.push.services.mozilla.com",
    "*.push.apple.com",
    "*.notify.windows.com",
)
# Where a Google service account's ``token_uri`` may point (current and older forms).
FCM_TOKEN_HOSTS: tuple[str, ...] = ("oauth2.googleapis.com", "accounts.google.com", "www.googleapis.com")

_STRICT = KnowledgeSettings(allow_loopback=False)
_LOOPBACK_OK = KnowledgeSettings(allow_loopback=True)
_DEFAULT_PORTS = {"https": 443, "http": 80}
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class EgressRefused(Exception):
    """The destination is not allowed. The message is safe to show to whoever supplied the URL."""


class Unresolved(EgressRefused):
    """The name did not resolve: nothing to classify yet."""


def _matches(host: str, patterns: Iterable[str]) -> bool:
    for p in patterns:
        p = p.strip().lower().rstrip(".")
        if not p:
            continue
        if p.startswith("*."):
            if host.endswith(p[1:]) and len(host) > len(p) - 1:
                return True
        elif host == p:
            return True
    return False


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """``extra_hosts``: operator-trusted hosts (any port) added to both push lists.
    ``allow_http`` and ``allow_loopback`` exist for tests against local servers; both default off."""

    extra_hosts: tuple[str, ...] = ()
    allow_http: bool = False
    allow_loopback: bool = False
    resolver: Resolver = system_resolver

    @classmethod
    def from_settings(cls, settings: PushSettings, resolver: Resolver = system_resolver) -> "EgressPolicy":
        return cls(tuple(settings.egress_hosts), settings.egress_allow_http, settings.egress_allow_loopback, resolver)

    def check_url(self, url: str, purpose: Purpose) -> httpx.URL:
        try:
            u = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise EgressRefused("not a valid URL") from exc
        schemes = ("https", "http") if self.allow_http else ("https",)
        if u.scheme not in schemes:
            raise EgressRefused("only https URLs are accepted")
        if u.userinfo:
            raise EgressRefused("URLs with credentials are refused")
        host = u.host.lower().rstrip(".")
        if not host:
            raise EgressRefused("the URL has no host")
        trusted = _matches(host, self.extra_hosts)
        if purpose != "webhook" and not trusted:
            known = WEBPUSH_HOSTS if purpose == "webpush" else FCM_TOKEN_HOSTS
            if not _matches(host, known):
                raise EgressRefused(f"{host!r} is not a known push service")
        port = u.port or _DEFAULT_PORTS[u.scheme]
        if not trusted and port != _DEFAULT_PORTS[u.scheme]:
            raise EgressRefused(f"port {port} is not allowed")
        return u

    def check_addresses(self, addresses: Sequence[str]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        """Every answer must be public: a name that also resolves privately is refused whole."""
        if not addresses:
            raise Unresolved("the host did not resolve")
        ks = _LOOPBACK_OK if self.allow_loopback else _STRICT
        try:
            checked = [check_address(a, ks) for a in addresses]
            for ip in checked:
                if isinstance(ip, ipaddress.IPv6Address) and ip in _NAT64:
                    # a NAT64 gateway would carry this to the IPv4 address inside it
                    check_address(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)), ks)
        except UnsafeURL as exc:
            raise EgressRefused("the host does not resolve to a public address") from exc
        return checked

    async def resolve(self, host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        try:
            # getaddrinfo blocks: a slow resolver must not hold the event loop
            addresses = await asyncio.to_thread(self.resolver, host, port)
        except Exception as exc:  # the resolver's failure modes are its own (gaierror, FetchFailed)
            raise Unresolved("the host could not be resolved") from exc
        return self.check_addresses(list(addresses))

    async def check_resolved(self, url: str, purpose: Purpose) -> httpx.URL:
        """``check_url``, then every address the name has now must be public. A known push host
        that does not resolve at this moment (DNS down, offline) is accepted: the host itself is
        trusted and the connection is checked again when it is made. A webhook host must resolve."""
        u = self.check_url(url, purpose)
        try:
            await self.resolve(u.host, u.port or _DEFAULT_PORTS[u.scheme])
        except Unresolved:
            if purpose == "webhook":
                raise
        return u


class _GuardedBackend(AsyncNetworkBackend):
    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy
        self.inner = AutoBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None) -> AsyncNetworkStream:
        checked = await self.policy.resolve(host, port)
        # connect to the address just checked, not to whatever a second lookup would say
        return await self.inner.connect_tcp(str(checked[0]), port, timeout=timeout, local_address=local_address,
                                            socket_options=socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
                                  ) -> AsyncNetworkStream:
        raise EgressRefused("unix sockets are not a push destination")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with every connection checked and pinned by ``policy``. Environment
    proxies are ignored: a proxy would connect on our behalf to an unchecked address."""

    def __init__(self, policy: EgressPolicy, *, http2: bool = False, limits: httpx.Limits | None = None) -> None:
        if limits is None:
            ps = PushSettings()
            limits = httpx.Limits(max_connections=ps.egress_max_connections,
                                  max_keepalive_connections=ps.egress_max_keepalive)
        super().__init__(http2=http2, limits=limits, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=http2,
            network_backend=_GuardedBackend(policy),
        )
