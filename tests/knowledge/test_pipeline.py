import httpx
import pytest

from knowledge.errors import KnowledgeError, UnsafeURL
from knowledge.pipeline import ingest_file, ingest_url
from knowledge.service import KnowledgeService
from tests.knowledge.samples import make_pdf


def test_ingest_file_parses_in_the_sandbox_and_reports_progress(hash_service: KnowledgeService) -> None:
    hash_service.create_kb("kb")
    seen: list[float] = []
    result = ingest_file(
        hash_service, "kb", "manual", make_pdf(["Model ZX-9 manual"]), "m.pdf", None, progress=seen.append
    )
    assert result.chunk_count == 1 and seen[0] == 0.1 and seen[-1] == 1.0
    assert hash_service.search("kb", "ZX-9")[0].heading_path == ("Page 1",)
    with pytest.raises(KnowledgeError):
        ingest_file(hash_service, "kb", "bad", b"junk", "x.pdf", None)


def test_ingest_url_pages_of_a_sitemap(hash_service: KnowledgeService) -> None:
    hash_service.create_kb("kb")
    sitemap = "<urlset><url><loc>https://docs.example.com/a</loc></url><url><loc>https://docs.example.com/b</loc></url></urlset>"
    routes = {
        "/sitemap.xml": httpx.Response(200, text=sitemap, headers={"content-type": "application/xml"}),
        "/a": httpx.Response(200, html="<h1>A</h1><p>Code AA-1 page.</p>"),
        "/b": httpx.Response(200, html="<h1>B</h1><script>x</script>"),
    }
    client = httpx.Client(transport=httpx.MockTransport(lambda r: routes.get(r.url.path, httpx.Response(404))))
    outcomes = ingest_url(
        hash_service,
        "kb",
        "site",
        "https://docs.example.com/sitemap.xml",
        client=client,
        resolver=lambda host, port: ["93.184.216.34"],
    )
    assert [(u, d) for u, d, _ in outcomes] == [
        ("https://docs.example.com/a", "site/p0"),
        ("https://docs.example.com/b", "site/p1"),
    ]
    assert isinstance(outcomes[1][2], KnowledgeError)  # nothing but a script: no text
    hit = hash_service.search("kb", "AA-1")[0]
    assert hit.document_id == "site/p0" and hit.source == "https://docs.example.com/a"
    with pytest.raises(UnsafeURL):
        ingest_url(hash_service, "kb", "x", "http://localhost/", client=client, resolver=lambda h, p: ["127.0.0.1"])
