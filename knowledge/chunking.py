"""Chunks that keep the document's structure: a heading breadcrumb on each, FAQ pairs whole."""

from dataclasses import dataclass

from langchain_text_splitters import RecursiveCharacterTextSplitter

from knowledge.answers import drop_navigation
from knowledge.documents import ParsedDocument
from knowledge.settings import KnowledgeSettings

__all__ = ["BREADCRUMB_SEPARATOR", "Chunk", "chunk_document", "embedding_text"]

BREADCRUMB_SEPARATOR = " > "

# Sentence ends of CJK text come before the generic fallbacks, so Chinese splits on "。".
_SEPARATORS = ["\n\n", "\n", "。", "！", "？", "；", ". ", "! ", "? ", "; ", "，", ", ", " ", ""]


@dataclass(frozen=True, slots=True)
class Chunk:
    id: str
    document_id: str
    index: int
    text: str
    heading_path: tuple[str, ...]
    kind: str  # "text" or "faq"


def embedding_text(title: str, chunk: Chunk) -> str:
    """What gets embedded and keyword-indexed: the chunk with its title and breadcrumb.

    A chunk such as "Allow 5-7 business days." means little without "Returns > Refund timing".
    """
    crumbs = [p for p in (title, *chunk.heading_path) if p]
    # Drop a first heading that repeats the title.
    if len(crumbs) > 1 and crumbs[0] == crumbs[1]:
        crumbs = crumbs[1:]
    head = BREADCRUMB_SEPARATOR.join(crumbs)
    return f"{head}\n{chunk.text}" if head else chunk.text


def chunk_document(document_id: str, parsed: ParsedDocument, settings: KnowledgeSettings) -> list[Chunk]:
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=settings.chunk_size,
        chunk_overlap=min(settings.chunk_overlap, settings.chunk_size // 2),
        separators=_SEPARATORS,
        keep_separator="end",
        strip_whitespace=True,
    )
    chunks: list[Chunk] = []

    def add(text: str, heading_path: tuple[str, ...], kind: str) -> None:
        n = len(chunks)
        chunks.append(Chunk(f"{document_id}:{n}", document_id, n, text, heading_path, kind))

    for section in parsed.sections:
        # Breadcrumbs, menus and footers of exported pages would make chunks of their own that
        # match every question a little and answer none.
        for piece in splitter.split_text(drop_navigation(section.text)):
            if piece.strip():
                add(piece, section.heading_path, "text")
    for qa in parsed.faq:
        # A pair is one unit of meaning: an answer without its question retrieves badly.
        add(f"Q: {qa.question}\nA: {qa.answer}", (), "faq")
    return chunks
