"""From an upload or a URL to indexed chunks in one call: parse in the sandbox, then ingest.

The server's ingestion job calls these from a worker thread and turns a ``KnowledgeError``
into the document's ``failed`` status with ``error.detail``.
"""

import httpx

from knowledge.errors import KnowledgeError
from knowledge.fetch import Resolver, fetch_pages, system_resolver
from knowledge.sandbox import parse_in_subprocess
from knowledge.service import IngestResult, KnowledgeService, Progress

__all__ = ["ingest_file", "ingest_url"]

_PARSE_SHARE = 0.1


def _scaled(progress: Progress | None, low: float, high: float) -> Progress | None:
    if progress is None:
        return None
    report = progress
    return lambda fraction: report(low + (high - low) * fraction)


def ingest_file(
    service: KnowledgeService,
    kb_id: str,
    document_id: str,
    data: bytes,
    filename: str,
    content_type: str | None,
    *,
    progress: Progress | None = None,
) -> IngestResult:
    service.open_kb(kb_id)  # refuse a missing KB or a model mismatch before parsing
    parsed = parse_in_subprocess(data, filename, content_type, service.settings)
    if progress is not None:
        progress(_PARSE_SHARE)
    return service.ingest(kb_id, document_id, parsed, _scaled(progress, _PARSE_SHARE, 1.0))


def ingest_url(
    service: KnowledgeService,
    kb_id: str,
    document_id: str,
    url: str,
    *,
    client: httpx.Client,
    resolver: Resolver = system_resolver,
    progress: Progress | None = None,
) -> list[tuple[str, str, IngestResult | KnowledgeError]]:
    """(page url, document id, result or error) per page. One page keeps ``document_id``; the
    pages of a sitemap get ``{document_id}/p{n}``. Raises only when the URL itself is refused.
    """
    service.open_kb(kb_id)
    site = fetch_pages(url, client=client, settings=service.settings, resolver=resolver)
    outcomes: list[tuple[str, str, IngestResult | KnowledgeError]] = []
    total = max(len(site.pages), 1)
    for n, page in enumerate(site.pages):
        page_id = document_id if len(site.pages) == 1 else f"{document_id}/p{n}"
        try:
            parsed = parse_in_subprocess(page.content, page.filename, page.content_type, service.settings)
            parsed = type(parsed)(title=parsed.title, source=page.url, sections=parsed.sections, faq=parsed.faq)
            result = service.ingest(kb_id, page_id, parsed, _scaled(progress, n / total, (n + 1) / total))
        except KnowledgeError as exc:
            outcomes.append((page.url, page_id, exc))
            continue
        outcomes.append((page.url, page_id, result))
    for failed_url, detail in site.failures:
        outcomes.append((failed_url, "", KnowledgeError(detail)))
    if progress is not None:
        progress(1.0)
    return outcomes
