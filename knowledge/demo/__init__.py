"""The demo knowledge base: the help centre of Brightbrew, a fictional maker of coffee machines,
in English and Chinese, with its golden set (``golden.jsonl``)."""

from collections.abc import Callable
from pathlib import Path

from knowledge.loaders import parse_document
from knowledge.service import IngestResult, KnowledgeService

__all__ = ["DEMO_DIR", "GOLDEN_PATH", "demo_pages", "load_demo"]

DEMO_DIR = Path(__file__).parent
GOLDEN_PATH = DEMO_DIR / "golden.jsonl"


def demo_pages() -> list[Path]:
    return sorted(p for p in (DEMO_DIR / "pages").iterdir() if p.suffix in (".md", ".html"))


def load_demo(
    service: KnowledgeService,
    kb_id: str,
    *,
    create: bool = True,
    progress: Callable[[str, IngestResult], None] | None = None,
) -> list[IngestResult]:
    """Ingest every demo page under its file stem as document id.

    The pages are our own files, so they are parsed in-process rather than in the sandbox.
    """
    if create:
        service.create_kb(kb_id, exist_ok=True)
    results: list[IngestResult] = []
    for page in demo_pages():
        parsed = parse_document(page.read_bytes(), page.name, None, service.settings)
        result = service.ingest(kb_id, page.stem, parsed)
        results.append(result)
        if progress is not None:
            progress(page.stem, result)
    return results
