"""The server's side of knowledge bases: building the knowledge service from settings, the
retriever the AI agent reads through (the ``bots`` port), and ingestion jobs run from the
outbox (``queued → processing → ready | failed``) so a crash resumes them."""

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import select

from bots.ports import Passage
from knowledge.errors import KnowledgeError
from knowledge.evaluation import Answer, Answerer
from knowledge.service import KnowledgeService, Retrieval
from knowledge.settings import KnowledgeSettings
from server.core.db import Database
from server.core.models import Bot, Document, KnowledgeBase, OutboxRow, utcnow
from server.core.outbox import claim, finish
from server.core.settings import Settings

__all__ = [
    "IngestWorker",
    "KnowledgeRetriever",
    "build_knowledge",
    "discard_upload",
    "enqueue_document",
    "extractive_answerer",
    "load_demo_kb",
    "passages_for",
]

log = logging.getLogger("parley.kb")


def build_knowledge(settings: Settings) -> KnowledgeService:
    from knowledge.embeddings import default_embedder
    from knowledge.store import ChromaStore

    ks = KnowledgeSettings(max_upload_bytes=settings.max_upload_bytes,
                           reembed_on_mismatch=settings.reembed_on_mismatch)
    if settings.chroma_url:
        url = httpx.URL(settings.chroma_url)
        store = ChromaStore.http(url.host, url.port or (443 if url.scheme == "https" else 8000),
                                 ssl=url.scheme == "https")
    else:
        store = ChromaStore.persistent(settings.data_dir / "chroma")
    return KnowledgeService(store, default_embedder(ks, settings.embedder), ks)


class KnowledgeRetriever:
    """``bots.ports.Retriever`` over the knowledge service; searches run off the event loop."""

    def __init__(self, service: KnowledgeService) -> None:
        self.service = service

    async def retrieve(self, kb_id: str, query: str, k: int) -> list[Passage]:
        if not kb_id or kb_id == "none":
            return []
        try:
            return await asyncio.to_thread(passages_for, self.service, kb_id, query, k)
        except KnowledgeError:
            return []


def passages_for(service: KnowledgeService, kb_id: str, query: str, k: int,
                 found: Retrieval | None = None) -> list[Passage]:
    """The bot's passages: the hits with the sentences that answer, scored as the in-scope
    probability (what ``HandoffSettings.score_threshold`` is compared with)."""
    found = found or service.retrieve(kb_id, query, k)
    if not found.in_scope:
        return []
    passages = [Passage(chunk_id=h.chunk_id, document_id=h.document_id, title=h.title, source=h.source,
                        heading_path=" > ".join(h.heading_path), text=h.text, score=h.confidence,
                        highlights=light.sentences)
                for h, light in service.answer_passages(kb_id, query, found, documents=3)]
    # The other hits follow as plain passages, for a model to read.
    chosen = {p.document_id for p in passages}
    passages += [Passage(chunk_id=h.chunk_id, document_id=h.document_id, title=h.title, source=h.source,
                         heading_path=" > ".join(h.heading_path), text=h.text, score=h.confidence)
                 for h in found.hits if h.document_id not in chosen]
    return passages


def extractive_answerer(service: KnowledgeService, kb_id: str) -> Answerer:
    """The bot's own no-model answer (what a visitor reads), for `parley kb eval`'s answer figures."""
    from bots.config import HandoffSettings
    from bots.extractive import extractive_answer

    threshold = HandoffSettings().score_threshold

    def answer(question: str, found: Retrieval) -> Answer:
        passages = passages_for(service, kb_id, question, 5, found)
        result = extractive_answer(question, passages, threshold=threshold)
        by_doc = {h.document_id: h for h in found.hits}
        cited = [] if result.abstained else [by_doc[c.document_id] for c in result.citations if c.document_id in by_doc]
        return Answer(result.text, cited)

    return answer


def upload_path(settings: Settings, document_id: str) -> Path:
    return settings.data_dir / "uploads" / f"{document_id}.bin"


async def enqueue_document(db: Database, settings: Settings, doc: Document, kind: str, body: bytes,
                           *, filename: str = "", content_type: str | None = None) -> None:
    """Store the upload and its job in one go; the worker picks it up (now, or after a crash)."""
    path = upload_path(settings, doc.id)
    await asyncio.to_thread(_write, path, body)
    async with db.write() as s:
        s.add(doc)
        s.add(OutboxRow(tenant_id=doc.tenant_id, topic="ingest",
                        payload={"document_id": doc.id, "kind": kind, "filename": filename,
                                 "content_type": content_type}))


async def discard_upload(settings: Settings, document_id: str) -> None:
    await asyncio.to_thread(upload_path(settings, document_id).unlink, missing_ok=True)


def _write(path: Path, body: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)


class IngestWorker:
    def __init__(self, db: Database, settings: Settings, service: KnowledgeService) -> None:
        self.db = db
        self.settings = settings
        self.service = service
        self.poll_s = settings.outbox_poll_s
        self.wake = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                while await self.run_once():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:  # broad: one failed round must not stop the worker: logged, the next round retries
                log.exception("ingest round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.poll_s)
            self.wake.clear()

    async def run_once(self) -> int:
        rows = await claim(self.db, "ingest", now=utcnow(), lease_s=self.settings.ingest_lease_s, limit=1)
        for row in rows:
            await self._one(row)
        return len(rows)

    async def _one(self, row: OutboxRow) -> None:
        doc_id = str(row.payload.get("document_id"))
        async with self.db.session() as s:
            doc = await s.get(Document, doc_id)
        if doc is None:
            await finish(self.db, row, done=True, last_error="document deleted")
            await self._discard_upload(doc_id)
            return
        await self._status(doc_id, "processing", progress=0.0)
        loop = asyncio.get_running_loop()

        def progress(fraction: float) -> None:
            asyncio.run_coroutine_threadsafe(self._status(doc_id, "processing", progress=fraction), loop)

        try:
            parsed = await self._parse(doc, row.payload)
            result = await asyncio.to_thread(self.service.ingest, doc.knowledge_base_id, doc.id, parsed, progress)
        except KnowledgeError as exc:
            await self._status(doc_id, "failed", error=f"{exc.code}: {exc.detail}"[:1000])
            await finish(self.db, row, done=True, last_error=exc.code)
            await self._discard_upload(doc_id)
            return
        except Exception as exc:  # broad: any other failure marks the document failed instead of retrying forever
            log.exception("ingestion of %s failed", doc_id)
            await self._status(doc_id, "failed", error=f"internal: {type(exc).__name__}")
            await finish(self.db, row, done=True, last_error=type(exc).__name__)
            await self._discard_upload(doc_id)
            return
        extra: dict[str, Any] = {"chunk_count": result.chunk_count, "content_hash": result.content_hash,
                                 "progress": 1.0, "error": None}
        if result.skipped_duplicate:
            extra["error"] = f"duplicate of document {result.duplicate_of}; nothing new to index"
        if parsed.title and doc.title in ("", "Untitled"):
            extra["title"] = parsed.title
        await self._status(doc_id, "ready", **extra)
        await finish(self.db, row, done=True)
        await self._discard_upload(doc_id)

    async def _discard_upload(self, doc_id: str) -> None:
        """A finished job (ready, failed or deleted) never reads its raw upload again."""
        await discard_upload(self.settings, doc_id)

    async def _parse(self, doc: Document, payload: dict[str, Any]) -> Any:
        from knowledge.sandbox import parse_in_subprocess
        from knowledge.sources import from_faq, from_text

        ks = self.service.settings
        body = await asyncio.to_thread(upload_path(self.settings, doc.id).read_bytes)
        kind = payload.get("kind")
        if kind == "text":
            data = json.loads(body)
            return from_text(data["title"], data["text"], source=doc.source, settings=ks)
        if kind == "faq":
            data = json.loads(body)
            return from_faq(data["faq"], title=doc.title, source=doc.source, settings=ks)
        if kind == "url":
            return await asyncio.to_thread(self._fetch_and_parse, body.decode(), ks)
        return await asyncio.to_thread(parse_in_subprocess, body, str(payload.get("filename") or "upload"),
                                       payload.get("content_type"), ks)

    @staticmethod
    def _fetch_and_parse(url: str, ks: KnowledgeSettings) -> Any:
        import httpx

        from knowledge.documents import ParsedDocument
        from knowledge.errors import ParseFailed
        from knowledge.fetch import fetch_pages
        from knowledge.sandbox import parse_in_subprocess

        with httpx.Client(timeout=ks.fetch_timeout_seconds, follow_redirects=False) as client:
            site = fetch_pages(url, client=client, settings=ks)
        sections = []
        title = ""
        for page in site.pages:
            parsed = parse_in_subprocess(page.content, page.filename, page.content_type, ks)
            title = title or parsed.title
            sections.extend(parsed.sections)
        if not sections:
            raise ParseFailed("no page of this URL had text to index")
        return ParsedDocument(title=title or url, source=url, sections=sections)

    async def _status(self, doc_id: str, status: str, **values: Any) -> None:
        async with self.db.write() as s:
            doc = await s.get(Document, doc_id)
            if doc is None:
                return
            doc.status = status
            for k, v in values.items():
                setattr(doc, k, v)
            doc.updated_at = utcnow()
            s.add(doc)


async def load_demo_kb(db: Database, service: KnowledgeService, tenant_id: str) -> str:
    """The demo help centre, indexed and attached to the tenant's default bot."""
    from knowledge.demo import demo_pages
    from knowledge.loaders import parse_document

    async with db.write() as s:
        kb = KnowledgeBase(tenant_id=tenant_id, name="Brightbrew help centre (demo)")
        s.add(kb)
    await asyncio.to_thread(service.create_kb, kb.id, exist_ok=True)
    for page in demo_pages():
        doc_id = _doc_id(kb.id, page.stem)
        parsed = await asyncio.to_thread(parse_document, page.read_bytes(), page.name, None, service.settings)
        result = await asyncio.to_thread(service.ingest, kb.id, doc_id, parsed)
        async with db.write() as s:
            s.add(Document(id=doc_id, tenant_id=tenant_id, knowledge_base_id=kb.id, title=parsed.title,
                           source=f"demo:{page.name}", status="ready", progress=1.0,
                           chunk_count=result.chunk_count, content_hash=result.content_hash))
    async with db.write() as s:
        bot = (await s.exec(select(Bot).where(Bot.tenant_id == tenant_id, Bot.is_default == True))).first()  # noqa: E712
        if bot is not None:
            bot.knowledge_base_id = kb.id
            s.add(bot)
    return kb.id


def _doc_id(kb_id: str, stem: str) -> str:
    import hashlib

    return hashlib.sha256(f"{kb_id}:{stem}".encode()).hexdigest()[:32]
