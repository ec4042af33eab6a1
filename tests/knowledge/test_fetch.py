import http.server
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest

from knowledge.errors import DocumentTooLarge, FetchFailed, UnsafeURL
from knowledge.fetch import fetch_pages, fetch_url
from knowledge.settings import KnowledgeSettings

S = KnowledgeSettings()


def resolver_for(table: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    def resolve(host: str, port: int) -> list[str]:
        return table[host]

    return resolve


class Recorder:
    """A MockTransport handler that records every request it is sent."""

    def __init__(self, routes: dict[str, httpx.Response] | None = None) -> None:
        self.routes = routes or {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = f"{request.headers['host']}{request.url.raw_path.decode()}"
        return self.routes.get(key, httpx.Response(404))


def client_for(recorder: Recorder) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(recorder))


PUBLIC = "93.184.216.34"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.5.6.7",
        "::1",
        "10.1.2.3",
        "172.16.0.9",
        "192.168.1.1",
        "169.254.169.254",
        "fe80::1",
        "fc00::1",
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "100.64.0.1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "240.0.0.1",
        "198.18.0.1",
    ],
)
def test_private_addresses_are_refused_before_connecting(address: str) -> None:
    recorder = Recorder()
    with pytest.raises(UnsafeURL) as info:
        fetch_url(
            "https://help.example.com/page",
            client=client_for(recorder),
            settings=S,
            resolver=resolver_for({"help.example.com": [address]}),
        )
    assert info.value.code == "validation_failed"
    assert recorder.requests == []


def test_one_private_answer_among_public_ones_is_refused() -> None:
    recorder = Recorder()
    with pytest.raises(UnsafeURL):
        fetch_url(
            "https://mixed.example.com/",
            client=client_for(recorder),
            settings=S,
            resolver=resolver_for({"mixed.example.com": [PUBLIC, "10.0.0.1"]}),
        )
    assert recorder.requests == []


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.com/a", "gopher://example.com/", "javascript:alert(1)", "data:,x"],
)
def test_non_http_schemes_are_refused(url: str) -> None:
    recorder = Recorder()
    with pytest.raises(UnsafeURL):
        fetch_url(url, client=client_for(recorder), settings=S, resolver=resolver_for({}))
    assert recorder.requests == []


@pytest.mark.parametrize("url", ["http://example.com:8080/", "https://example.com:22/", "http://example.com:6379/"])
def test_odd_ports_are_refused(url: str) -> None:
    recorder = Recorder()
    with pytest.raises(UnsafeURL) as info:
        fetch_url(url, client=client_for(recorder), settings=S, resolver=resolver_for({"example.com": [PUBLIC]}))
    assert "port" in info.value.detail
    assert recorder.requests == []


def test_credentials_in_url_are_refused() -> None:
    with pytest.raises(UnsafeURL):
        fetch_url(
            "https://user:pw@example.com/",
            client=client_for(Recorder()),
            settings=S,
            resolver=resolver_for({"example.com": [PUBLIC]}),
        )


def test_connection_is_pinned_to_the_checked_address() -> None:
    recorder = Recorder({"example.com/a.html": httpx.Response(200, html="<h1>A</h1>")})
    page = fetch_url(
        "http://example.com/a.html",
        client=client_for(recorder),
        settings=S,
        resolver=resolver_for({"example.com": [PUBLIC]}),
    )
    assert page.content == b"<h1>A</h1>" and page.filename == "a.html"
    sent = recorder.requests[0]
    assert sent.url.host == PUBLIC and sent.headers["host"] == "example.com"


def test_redirect_to_a_private_address_is_refused() -> None:
    recorder = Recorder(
        {
            "example.com/start": httpx.Response(302, headers={"location": "http://internal.example.com/admin"}),
        }
    )
    resolver = resolver_for({"example.com": [PUBLIC], "internal.example.com": ["10.0.0.5"]})
    with pytest.raises(UnsafeURL):
        fetch_url("http://example.com/start", client=client_for(recorder), settings=S, resolver=resolver)
    assert [r.headers["host"] for r in recorder.requests] == ["example.com"]


def test_redirect_to_metadata_ip_literal_and_to_file_scheme_are_refused() -> None:
    for location in ("http://169.254.169.254/latest/meta-data", "file:///etc/passwd"):
        recorder = Recorder({"example.com/go": httpx.Response(301, headers={"location": location})})
        with pytest.raises(UnsafeURL):
            fetch_url(
                "http://example.com/go",
                client=client_for(recorder),
                settings=S,
                resolver=lambda host, port: [host] if host[0].isdigit() else [PUBLIC],
            )
        assert len(recorder.requests) == 1


def test_public_redirects_are_followed_up_to_the_limit() -> None:
    recorder = Recorder(
        {
            "example.com/old": httpx.Response(301, headers={"location": "/new"}),
            "example.com/new": httpx.Response(200, text="moved here", headers={"content-type": "text/plain"}),
            "example.com/loop": httpx.Response(302, headers={"location": "/loop"}),
        }
    )
    resolver = resolver_for({"example.com": [PUBLIC]})
    page = fetch_url("http://example.com/old", client=client_for(recorder), settings=S, resolver=resolver)
    assert page.url == "http://example.com/new" and page.content == b"moved here"
    with pytest.raises(FetchFailed):
        fetch_url("http://example.com/loop", client=client_for(recorder), settings=S, resolver=resolver)


def test_body_limit_while_streaming_and_declared_length() -> None:
    small = KnowledgeSettings(max_upload_bytes=1000)
    resolver = resolver_for({"example.com": [PUBLIC]})

    def streamed(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([b"x" * 600, b"y" * 600]))

    with pytest.raises(DocumentTooLarge):
        fetch_url(
            "http://example.com/",
            client=httpx.Client(transport=httpx.MockTransport(streamed)),
            settings=small,
            resolver=resolver,
        )
    declared = Recorder({"example.com/": httpx.Response(200, content=b"z" * 2000)})
    with pytest.raises(DocumentTooLarge):
        fetch_url("http://example.com/", client=client_for(declared), settings=small, resolver=resolver)


def test_http_errors_become_fetch_failed() -> None:
    recorder = Recorder()
    with pytest.raises(FetchFailed):
        fetch_url(
            "http://example.com/missing",
            client=client_for(recorder),
            settings=S,
            resolver=resolver_for({"example.com": [PUBLIC]}),
        )


def test_sitemap_with_page_limit_and_unsafe_entries() -> None:
    sitemap = """<?xml version="1.0" encoding="UTF-8"?>
    <urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
      <url><loc>http://example.com/a.html</loc></url>
      <url><loc>http://evil.example.com/b.html</loc></url>
      <url><loc>http://example.com/c.html</loc></url>
      <url><loc>http://example.com/d.html</loc></url>
    </urlset>"""
    recorder = Recorder(
        {
            "example.com/sitemap.xml": httpx.Response(200, text=sitemap, headers={"content-type": "application/xml"}),
            "example.com/a.html": httpx.Response(200, html="<p>a</p>"),
            "example.com/c.html": httpx.Response(200, html="<p>c</p>"),
            "example.com/d.html": httpx.Response(200, html="<p>d</p>"),
        }
    )
    resolver = resolver_for({"example.com": [PUBLIC], "evil.example.com": ["192.168.0.1"]})
    site = fetch_pages(
        "http://example.com/sitemap.xml",
        client=client_for(recorder),
        settings=KnowledgeSettings(sitemap_page_limit=3),
        resolver=resolver,
    )
    assert [p.url for p in site.pages] == ["http://example.com/a.html", "http://example.com/c.html"]
    assert site.failures[0][0] == "http://evil.example.com/b.html"
    assert "evil" not in " ".join(r.headers["host"] for r in recorder.requests)


def test_sitemap_xml_bombs_are_not_expanded() -> None:
    bomb = """<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>
    <urlset><url><loc>&lol2;</loc></url></urlset>"""
    recorder = Recorder({"example.com/sitemap.xml": httpx.Response(200, text=bomb)})
    site = fetch_pages(
        "http://example.com/sitemap.xml",
        client=client_for(recorder),
        settings=S,
        resolver=resolver_for({"example.com": [PUBLIC]}),
    )
    # Treated as a plain page, never expanded.
    assert len(site.pages) == 1 and len(recorder.requests) == 1


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><title>Local</title><body><h1>Local page</h1><p>Served on loopback.</p></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def local_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_local_server_only_with_explicit_loopback_setting(local_server: int) -> None:
    url = f"http://docs.test:{local_server}/guide"
    resolver = resolver_for({"docs.test": ["127.0.0.1"]})
    with httpx.Client() as client:
        with pytest.raises(UnsafeURL):
            fetch_url(
                url,
                client=client,
                settings=KnowledgeSettings(allowed_ports=frozenset({local_server})),
                resolver=resolver,
            )
        allowed = KnowledgeSettings(allow_loopback=True, allowed_ports=frozenset({local_server}))
        page = fetch_url(url, client=client, settings=allowed, resolver=resolver)
        # Loopback allowed, but a private range still is not.
        with pytest.raises(UnsafeURL):
            fetch_url(url, client=client, settings=allowed, resolver=resolver_for({"docs.test": ["10.0.0.1"]}))
    assert b"Served on loopback" in page.content
    assert page.content_type == "text/html"
