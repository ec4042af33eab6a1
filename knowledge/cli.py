"""`parley kb`: create, fill, search and evaluate knowledge bases straight from the data dir.

It works on the same files as the server through ``knowledge.KnowledgeService``; run it while
the server is stopped, or against a Chroma server (``--chroma-host``), since two processes
writing one embedded Chroma directory is unsupported.
"""

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import httpx

from knowledge.demo import load_demo
from knowledge.documents import ParsedDocument
from knowledge.embeddings import default_embedder
from knowledge.errors import DocumentTooLarge, KnowledgeError
from knowledge.evaluation import (
    Answerer,
    evaluate_by_language,
    format_report,
    format_table,
    load_directory,
    load_golden,
)
from knowledge.fetch import fetch_pages
from knowledge.sandbox import parse_in_subprocess
from knowledge.service import KnowledgeService
from knowledge.settings import KnowledgeSettings
from knowledge.sources import safe_filename
from knowledge.store import ChromaStore

__all__ = ["kb"]


class _Context:
    def __init__(self, data_dir: Path, chroma_host: str | None, chroma_port: int, embedder: str) -> None:
        self.data_dir = data_dir
        self.chroma_host = chroma_host
        self.chroma_port = chroma_port
        self.embedder_name = embedder
        self._service: KnowledgeService | None = None

    @property
    def service(self) -> KnowledgeService:
        if self._service is None:
            store = (
                ChromaStore.http(self.chroma_host, self.chroma_port)
                if self.chroma_host
                else ChromaStore.persistent(self.data_dir / "chroma")
            )
            settings = KnowledgeSettings()
            self._service = KnowledgeService(store, default_embedder(settings, self.embedder_name), settings)
        return self._service


def _fail(exc: KnowledgeError) -> click.ClickException:
    return click.ClickException(f"{exc.code}: {exc.detail}")


@click.group("kb")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("data"),
    show_default=True,
    help="Parley's data directory (Chroma lives in DATA_DIR/chroma).",
)
@click.option("--chroma-host", default=None, help="Use a Chroma server instead of the data dir.")
@click.option("--chroma-port", default=8000, show_default=True, type=int)
@click.option(
    "--embedder",
    type=click.Choice(["use", "minilm", "onnx", "hash"]),
    default="use",
    show_default=True,
    help="Embedding model: multilingual USE, or the English MiniLM (onnx is its old name).",
)
@click.pass_context
def kb(ctx: click.Context, data_dir: Path, chroma_host: str | None, chroma_port: int, embedder: str) -> None:
    """Manage knowledge bases."""
    ctx.obj = _Context(data_dir, chroma_host, chroma_port, "minilm" if embedder == "onnx" else embedder)


@kb.command()
@click.argument("name")
@click.pass_obj
def create(obj: _Context, name: str) -> None:
    """Create the knowledge base NAME."""
    try:
        obj.service.create_kb(name)
    except KnowledgeError as exc:
        raise _fail(exc) from exc
    click.echo(f"created knowledge base {name!r} ({obj.service.embedder.model_id})")


def _files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield from sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    else:
        yield path


def _parse_file(path: Path, settings: KnowledgeSettings) -> ParsedDocument:
    size = path.stat().st_size
    if size > settings.max_upload_bytes:
        raise DocumentTooLarge(f"{path.name} has {size} bytes; the limit is {settings.max_upload_bytes}")
    return parse_in_subprocess(path.read_bytes(), path.name, None, settings)


def _documents(sources: tuple[str, ...], settings: KnowledgeSettings) -> Iterator[tuple[str, Any]]:
    """(document id, ParsedDocument or KnowledgeError) for every page and file named."""
    for source in sources:
        if source.startswith(("http://", "https://")):
            try:
                with httpx.Client(follow_redirects=False) as client:
                    site = fetch_pages(source, client=client, settings=settings)
            except KnowledgeError as exc:
                yield source, exc
                continue
            for url, detail in site.failures:
                yield url, KnowledgeError(detail)
            for page in site.pages:
                try:
                    parsed = parse_in_subprocess(page.content, page.filename, page.content_type, settings)
                    yield page.url, replace(parsed, source=page.url)
                except KnowledgeError as exc:
                    yield page.url, exc
            continue
        path = Path(source)
        if not path.exists():
            yield source, KnowledgeError(f"{source} does not exist")
            continue
        for file in _files(path):
            try:
                yield safe_filename(file.stem), _parse_file(file, settings)
            except KnowledgeError as exc:
                yield file.name, exc


@kb.command()
@click.argument("kb_name", metavar="KB")
@click.argument("sources", nargs=-1, required=True, metavar="PATH|URL...")
@click.pass_obj
def ingest(obj: _Context, kb_name: str, sources: tuple[str, ...]) -> None:
    """Add files, directories, pages or sitemaps to KB."""
    service = obj.service
    try:
        service.open_kb(kb_name)
    except KnowledgeError as exc:
        raise _fail(exc) from exc
    failed = 0
    for document_id, parsed in _documents(sources, service.settings):
        if isinstance(parsed, KnowledgeError):
            failed += 1
            click.echo(f"failed   {document_id}: {parsed.detail}", err=True)
            continue
        with click.progressbar(length=100, label=f"{document_id[:40]:<40}") as bar:
            done = 0

            def advance(fraction: float, bar: Any = bar) -> None:
                nonlocal done
                step = int(fraction * 100) - done
                if step > 0:
                    bar.update(step)
                    done += step

            try:
                result = service.ingest(kb_name, document_id, parsed, progress=advance)
            except KnowledgeError as exc:
                failed += 1
                click.echo(f"failed   {document_id}: {exc.detail}", err=True)
                continue
        if result.skipped_duplicate:
            click.echo(f"skipped  {document_id}: same content as {result.duplicate_of}")
        else:
            click.echo(f"ready    {document_id}: {result.chunk_count} chunks")
    if failed:
        raise click.ClickException(f"{failed} source(s) failed")


@kb.command()
@click.argument("kb_name", metavar="KB")
@click.argument("query")
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(1, 50))
@click.pass_obj
def search(obj: _Context, kb_name: str, query: str, k: int) -> None:
    """Search KB for QUERY and print the hits with their citations."""
    try:
        hits = obj.service.search(kb_name, query, k)
    except KnowledgeError as exc:
        raise _fail(exc) from exc
    if not hits:
        click.echo("No answer in this knowledge base (nothing scored above the threshold).")
        return
    for rank, hit in enumerate(hits, start=1):
        crumb = " > ".join(hit.heading_path)
        click.echo(f"{rank}. [{hit.score:.3f}] {hit.title} ({hit.document_id}){' - ' + crumb if crumb else ''}")
        snippet = " ".join(hit.text.split())
        click.echo(f"   {snippet[:300]}{'...' if len(snippet) > 300 else ''}")


# How `eval` composes answers: the bot's own extractive answer, plugged in by ``server.cli`` (this
# module stays free of the server and the bots, like the rest of the knowledge tooling). Without
# it `eval` reports retrieval and abstention only.
ANSWERER_FACTORY: Callable[[KnowledgeService, str], Answerer] | None = None


@kb.command(name="eval")
@click.argument("kb_name", metavar="KB")
@click.argument("golden", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--misses/--no-misses", default=True, help="List the questions that missed.")
@click.option("--answers/--no-answers", default=True, help="Also compose each answer and check its fact.")
@click.option(
    "--docs",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Load this directory of documents into a throwaway in-memory KB first (ids are file stems).",
)
@click.pass_obj
def eval_(obj: _Context, kb_name: str, golden: Path, misses: bool, answers: bool, docs: Path | None) -> None:
    """Evaluate KB on a golden set (JSONL), per language: hit@1, hit@5, MRR, answer hit, abstention."""
    service = obj.service
    if docs is not None:
        service = KnowledgeService(ChromaStore.ephemeral(), service.embedder, service.settings)
        load_directory(service, kb_name, docs)
    try:
        answerer = ANSWERER_FACTORY(service, kb_name) if answers and ANSWERER_FACTORY is not None else None
        reports = evaluate_by_language(service, kb_name, load_golden(golden), answerer=answerer)
    except KnowledgeError as exc:
        raise _fail(exc) from exc
    click.echo(f"embedder: {service.embedder.model_id}")
    click.echo(format_table(reports))
    if misses:
        click.echo(format_report(reports["all"], show_misses=True))


@kb.command()
@click.argument("kb_name", metavar="KB")
@click.pass_obj
def reembed(obj: _Context, kb_name: str) -> None:
    """Re-embed every chunk of KB with the configured embedder (from the stored chunk texts)."""
    try:
        count = obj.service.reembed_kb(kb_name)
    except KnowledgeError as exc:
        raise _fail(exc) from exc
    click.echo(f"re-embedded {count} chunks of {kb_name!r} with {obj.service.embedder.model_id}")


@kb.command(name="load-demo")
@click.argument("kb_name", metavar="KB", default="demo")
@click.pass_obj
def load_demo_cmd(obj: _Context, kb_name: str) -> None:
    """Create KB (default "demo") and load the shipped Brightbrew help centre into it."""
    try:
        results = load_demo(obj.service, kb_name)
    except KnowledgeError as exc:
        raise _fail(exc) from exc
    click.echo(f"loaded {len(results)} pages, {sum(r.chunk_count for r in results)} chunks into {kb_name!r}")
