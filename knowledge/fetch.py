"""Fetching a page or a sitemap for ingestion, refusing anything but the public web.

The decision is made before connecting: the host is resolved through an injected resolver,
every address must be public, and the connection is then pinned to the checked address (the
URL carries the IP, ``Host`` and TLS SNI carry the name) so a second DNS answer cannot send
the request elsewhere. Redirects are followed by hand and every hop is checked again.
"""

import ipaddress
import posixpath
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from knowledge.errors import DocumentTooLarge, FetchFailed, KnowledgeError, UnsafeURL
from knowledge.settings import KnowledgeSettings

__all__ = [
    "FetchedPage",
    "Resolver",
    "SiteFetch",
    "check_address",
    "fetch_pages",
    "fetch_url",
    "system_resolver",
]

Resolver = Callable[[str, int], Sequence[str]]
"""(host, port) -> IP address strings. Injected so tests decide what a name resolves to."""

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchFailed(f"the host {host!r} could not be resolved") from exc
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True, slots=True)
class FetchedPage:
    url: str
    content: bytes
    content_type: str | None
    filename: str


@dataclass(slots=True)
class SiteFetch:
    pages: list[FetchedPage] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


def check_address(ip_text: str, settings: KnowledgeSettings) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        ip = ipaddress.ip_address(ip_text.split("%", 1)[0])
    except ValueError as exc:
        raise UnsafeURL(f"the resolver returned an invalid address {ip_text!r}") from exc
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            ip = mapped
    if ip.is_loopback and settings.allow_loopback:
        return ip
    if (
        ip.is_loopback
        or ip.is_link_local
        or ip.is_private
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
        or not ip.is_global
    ):
        raise UnsafeURL(f"the address {ip} is not on the public internet; fetching it is refused")
    return ip


def _check_url(
    url: httpx.URL, resolver: Resolver, settings: KnowledgeSettings
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if url.scheme not in _DEFAULT_PORTS:
        raise UnsafeURL(f"only http and https URLs can be fetched, not {url.scheme or 'none'!r}")
    if url.userinfo:
        raise UnsafeURL("URLs with credentials are refused")
    host = url.host
    if not host:
        raise UnsafeURL("the URL has no host")
    port = url.port or _DEFAULT_PORTS[url.scheme]
    if port not in settings.allowed_ports:
        raise UnsafeURL(f"port {port} is not allowed; allowed: {sorted(settings.allowed_ports)}")
    addresses = list(resolver(host, port))
    if not addresses:
        raise FetchFailed(f"the host {host!r} did not resolve")
    # Every answer must be public: a name that also resolves privately is refused as a whole.
    checked = [check_address(a, settings) for a in addresses]
    return checked[0]


def _pinned_request(
    client: httpx.Client,
    url: httpx.URL,
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    settings: KnowledgeSettings,
) -> httpx.Request:
    ip_host = str(ip)
    host_header = url.netloc.decode("ascii")
    return client.build_request(
        "GET",
        url.copy_with(host=ip_host),
        headers={"Host": host_header, "User-Agent": settings.user_agent, "Accept": "*/*"},
        timeout=httpx.Timeout(settings.fetch_timeout_seconds),
        extensions={"sni_hostname": url.host} if url.scheme == "https" else None,
    )


def _filename_for(url: httpx.URL) -> str:
    name = posixpath.basename(url.path.rstrip("/"))
    return name if "." in name else (name or "index") + ".url"


def fetch_url(
    url: str,
    *,
    client: httpx.Client,
    settings: KnowledgeSettings,
    resolver: Resolver = system_resolver,
) -> FetchedPage:
    """GET one URL with every hop checked; the body is capped at ``max_upload_bytes``.

    ``client`` must not follow redirects itself (``follow_redirects=False``, httpx's default).
    """
    try:
        current = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise UnsafeURL(f"not a valid URL: {url[:200]!r}") from exc
    deadline = time.monotonic() + settings.fetch_timeout_seconds * (settings.max_redirects + 1)
    for _hop in range(settings.max_redirects + 1):
        ip = _check_url(current, resolver, settings)
        request = _pinned_request(client, current, ip, settings)
        try:
            response = client.send(request, stream=True, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise FetchFailed(f"fetching {current} failed: {type(exc).__name__}") from exc
        try:
            if response.status_code in _REDIRECTS and "location" in response.headers:
                try:
                    current = current.join(response.headers["location"])
                except (httpx.InvalidURL, ValueError) as exc:
                    raise UnsafeURL("the redirect target is not a valid URL") from exc
                continue
            if response.status_code != 200:
                raise FetchFailed(f"fetching {current} answered HTTP {response.status_code}")
            body = _read_capped(response, settings, deadline)
            return FetchedPage(
                url=str(current),
                content=body,
                content_type=response.headers.get("content-type"),
                filename=_filename_for(current),
            )
        finally:
            response.close()
    raise FetchFailed(f"more than {settings.max_redirects} redirects")


def _read_capped(response: httpx.Response, settings: KnowledgeSettings, deadline: float) -> bytes:
    limit = settings.max_upload_bytes
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise DocumentTooLarge(f"the page declares {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise DocumentTooLarge(f"the page is larger than {limit} bytes")
            if time.monotonic() > deadline:
                raise FetchFailed("the page took too long to download")
            chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise FetchFailed(f"reading the page failed: {type(exc).__name__}") from exc
    return b"".join(chunks)


def _sitemap_locs(body: bytes) -> tuple[str, list[str]] | None:
    """('urlset' | 'sitemapindex', locations) when ``body`` is a sitemap, else None."""
    head = body[:512].lstrip()
    if not head.startswith(b"<"):
        return None
    try:
        root = ElementTree.fromstring(body)
    except (DefusedXmlException, ElementTree.ParseError, ValueError):
        return None
    kind = root.tag.rsplit("}", 1)[-1]
    if kind not in ("urlset", "sitemapindex"):
        return None
    locs = [
        (el.text or "").strip() for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "loc" and (el.text or "").strip()
    ]
    return kind, locs


def fetch_pages(
    url: str,
    *,
    client: httpx.Client,
    settings: KnowledgeSettings,
    resolver: Resolver = system_resolver,
) -> SiteFetch:
    """One page, or every page of a sitemap (one level of sitemap index) up to the page limit.

    A page of a sitemap that is refused or fails is listed in ``failures``; the rest go on.
    """
    first = fetch_url(url, client=client, settings=settings, resolver=resolver)
    parsed = _sitemap_locs(first.content)
    result = SiteFetch()
    if parsed is None:
        result.pages.append(first)
        return result
    kind, locs = parsed
    page_urls: list[str] = []
    if kind == "sitemapindex":
        for sitemap_url in locs[: settings.sitemap_page_limit]:
            if len(page_urls) >= settings.sitemap_page_limit:
                break
            try:
                child = fetch_url(sitemap_url, client=client, settings=settings, resolver=resolver)
            except KnowledgeError as exc:
                result.failures.append((sitemap_url, exc.detail))
                continue
            nested = _sitemap_locs(child.content)
            if nested is not None and nested[0] == "urlset":
                page_urls.extend(nested[1])
    else:
        page_urls = locs
    for page_url in page_urls[: settings.sitemap_page_limit]:
        try:
            result.pages.append(fetch_url(page_url, client=client, settings=settings, resolver=resolver))
        except KnowledgeError as exc:
            result.failures.append((page_url, exc.detail))
    return result
