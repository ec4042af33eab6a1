"""Knowledge bases and their documents (admin)."""

import asyncio
import json
from typing import Annotated, Any

import msgspec
from litestar import Request, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody
from sqlmodel import col, select

from server.accounts.auth import Principal
from server.agent.knowledge import discard_upload, enqueue_document
from server.api.bodies import read_body, read_file_part
from server.api.deps import Auth, DbDep, IngestDep, KnowledgeDep, SettingsDep, require
from server.core.db import Database
from server.core.models import Document, KnowledgeBase, new_id
from server.errors import BadInput, NotFound

__all__ = ["knowledge_handlers"]


class NewKnowledgeBase(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


def _kb_json(kb: KnowledgeBase, count: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": kb.id, "name": kb.name, "created_at": kb.created_at.isoformat()}
    if count is not None:
        out["document_count"] = count
    return out


def _doc_json(d: Document) -> dict[str, Any]:
    out: dict[str, Any] = {"id": d.id, "knowledge_base_id": d.knowledge_base_id, "title": d.title, "source": d.source,
                           "status": d.status, "progress": round(d.progress, 3), "chunk_count": d.chunk_count}
    if d.error:
        out["error"] = d.error
    return out


async def _kb(db: Database, p: Principal, kb_id: str) -> KnowledgeBase:
    async with db.session() as s:
        kb: KnowledgeBase | None = await s.get(KnowledgeBase, kb_id)
    if kb is None or kb.tenant_id != p.tenant_id:
        raise NotFound("knowledge base not found")
    return kb


@post("/v1/knowledge-bases", status_code=201)
async def create_kb(principal: Auth, data: JSONBody[NewKnowledgeBase], db: DbDep,
                    knowledge: KnowledgeDep) -> dict[str, Any]:
    require(principal, "admin")
    async with db.write() as s:
        kb = KnowledgeBase(tenant_id=principal.tenant_id, name=data.name)
        s.add(kb)
    await asyncio.to_thread(knowledge.create_kb, kb.id, exist_ok=True)
    return _kb_json(kb)


@get("/v1/knowledge-bases")
async def list_kbs(principal: Auth, db: DbDep) -> dict[str, Any]:
    require(principal, "admin")
    async with db.session() as s:
        kbs = list((await s.exec(select(KnowledgeBase).where(KnowledgeBase.tenant_id == principal.tenant_id)
                                 .order_by(col(KnowledgeBase.created_at)))).all())
    return {"knowledge_bases": [_kb_json(k) for k in kbs]}


@post("/v1/knowledge-bases/{kb_id:str}/documents", status_code=202, request_max_body_size=None,
      opt={"body_types": ("application/json", "multipart/form-data")})
async def add_document(request: Request[Any, Any, Any], principal: Auth, kb_id: FromPath[str], db: DbDep,
                       settings: SettingsDep, ingest_worker: IngestDep) -> dict[str, Any]:
    require(principal, "admin")
    kb = await _kb(db, principal, kb_id)
    ctype = request.headers.get("content-type", "")
    doc = Document(id=new_id(), tenant_id=principal.tenant_id, knowledge_base_id=kb.id, title="", source="")
    if ctype.startswith("multipart/form-data"):
        upload = await read_file_part(request, "file", settings.max_upload_bytes)
        from knowledge.sources import safe_filename, title_from_filename

        try:
            name = safe_filename(upload.filename or "upload")
        except (ValueError, TypeError) as exc:
            raise BadInput(f"bad file name: {exc}", field="file") from None
        doc.title, doc.source = title_from_filename(name), f"upload:{name}"
        await enqueue_document(db, settings, doc, "file", upload.data, filename=name,
                               content_type=upload.content_type)
        ingest_worker.wake.set()
        return {"document": _doc_json(doc)}
    raw = await read_body(request, settings.max_request_bytes, "JSON bodies")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadInput("body is not valid JSON", code="bad_frame") from None
    if not isinstance(data, dict):
        raise BadInput("body must be a JSON object")
    if "url" in data:
        url = data["url"]
        if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 2000:
            raise BadInput("url must be an http(s) URL", field="url")
        doc.title, doc.source = str(data.get("title") or url)[:500], url
        await enqueue_document(db, settings, doc, "url", url.encode())
    elif "faq" in data:
        faq = data["faq"]
        if not isinstance(faq, list) or not faq or not all(
                isinstance(q, dict) and isinstance(q.get("question"), str) and isinstance(q.get("answer"), str)
                for q in faq):
            raise BadInput("faq must be a non-empty list of {question, answer}", field="faq")
        doc.title, doc.source = str(data.get("title") or "FAQ")[:500], "faq"
        await enqueue_document(db, settings, doc, "faq", json.dumps({"faq": faq}).encode())
    elif "text" in data:
        text, title = data.get("text"), data.get("title")
        if not isinstance(text, str) or not text.strip():
            raise BadInput("text must be a non-empty string", field="text")
        if not isinstance(title, str) or not title.strip():
            raise BadInput("title is required with text", field="title")
        doc.title, doc.source = title[:500], "text"
        await enqueue_document(db, settings, doc, "text", json.dumps({"title": title, "text": text}).encode())
    else:
        raise BadInput("send a multipart 'file', or JSON with 'url', 'text' + 'title', or 'faq'")
    ingest_worker.wake.set()
    return {"document": _doc_json(doc)}


@get("/v1/knowledge-bases/{kb_id:str}/documents")
async def list_documents(principal: Auth, kb_id: FromPath[str], db: DbDep) -> dict[str, Any]:
    require(principal, "admin")
    kb = await _kb(db, principal, kb_id)
    async with db.session() as s:
        docs = list((await s.exec(select(Document).where(Document.knowledge_base_id == kb.id)
                                  .order_by(col(Document.created_at)))).all())
    return {"documents": [_doc_json(d) for d in docs]}


@get("/v1/knowledge-bases/{kb_id:str}/documents/{doc_id:str}")
async def get_document(principal: Auth, kb_id: FromPath[str],
                       doc_id: FromPath[str], db: DbDep) -> dict[str, Any]:
    require(principal, "admin")
    kb = await _kb(db, principal, kb_id)
    async with db.session() as s:
        doc = await s.get(Document, doc_id)
    if doc is None or doc.knowledge_base_id != kb.id:
        raise NotFound("document not found")
    return {"document": _doc_json(doc)}


@delete("/v1/knowledge-bases/{kb_id:str}/documents/{doc_id:str}", status_code=200)
async def delete_document(principal: Auth, kb_id: FromPath[str], doc_id: FromPath[str], db: DbDep,
                          settings: SettingsDep, knowledge: KnowledgeDep) -> dict[str, Any]:
    require(principal, "admin")
    kb = await _kb(db, principal, kb_id)
    async with db.write() as s:
        doc = await s.get(Document, doc_id)
        if doc is None or doc.knowledge_base_id != kb.id:
            raise NotFound("document not found")
        await s.delete(doc)
    await discard_upload(settings, doc_id)
    removed = await asyncio.to_thread(knowledge.delete_document, kb.id, doc_id)
    return {"deleted": doc_id, "chunks_removed": removed}


@get("/v1/knowledge-bases/{kb_id:str}/search")
async def search(principal: Auth, kb_id: FromPath[str], q: FromQuery[str], db: DbDep, knowledge: KnowledgeDep,
                 k: FromQuery[int] = 5) -> dict[str, Any]:
    require(principal, "admin")
    if not q.strip() or len(q) > 2000:
        raise BadInput("q must be 1..2000 characters", field="q")
    if not 1 <= k <= 50:
        raise BadInput("k must be 1..50", field="k")
    kb = await _kb(db, principal, kb_id)
    hits = await asyncio.to_thread(knowledge.search, kb.id, q, k)
    return {"hits": [{"chunk_id": h.chunk_id, "document_id": h.document_id, "title": h.title, "source": h.source,
                      "heading_path": list(h.heading_path), "text": h.text, "score": round(h.score, 4)}
                     for h in hits]}


knowledge_handlers = [create_kb, list_kbs, add_document, list_documents, get_document, delete_document, search]
