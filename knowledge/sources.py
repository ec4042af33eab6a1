"""What a document can come from: an uploaded file (format detection, a safe name), raw text,
or FAQ pairs given as data."""

import posixpath
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Literal

from knowledge.documents import ParsedDocument
from knowledge.errors import DocumentTooLarge, ParseFailed, UnsupportedFormat
from knowledge.settings import KnowledgeSettings

__all__ = [
    "Format",
    "detect_format",
    "from_faq",
    "from_text",
    "safe_filename",
    "title_from_filename",
]

Format = Literal["text", "markdown", "html", "pdf", "docx", "csv", "faq_json"]

_EXTENSIONS: dict[str, Format] = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "faq_json",
}
_CONTENT_TYPES: dict[str, Format] = {
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "text/csv": "csv",
    "text/tab-separated-values": "csv",
    "application/json": "faq_json",
}
_UNSAFE_CHARS = re.compile(r"[^\w.\- ()\[\]]+")


def safe_filename(filename: str) -> str:
    """The last path component only, without control characters: a label, never a path.

    Uploads are never written under their own name; this keeps ``../../etc/passwd`` from
    reaching logs, citations or anyone who later might.
    """
    name = unicodedata.normalize("NFC", filename).replace("\\", "/")
    name = posixpath.basename(name.rstrip("/"))
    name = _UNSAFE_CHARS.sub("_", name).strip(" .")
    return name[:200] or "upload"


def title_from_filename(name: str) -> str:
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return stem.replace("_", " ").replace("-", " ").strip() or name


def detect_format(filename: str, content_type: str | None) -> Format:
    ext = posixpath.splitext(filename.lower())[1]
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if content_type:
        base = content_type.split(";", 1)[0].strip().lower()
        if base in _CONTENT_TYPES:
            return _CONTENT_TYPES[base]
    raise UnsupportedFormat(
        f"unsupported file type {ext or content_type or 'unknown'!r}; "
        "use text, Markdown, HTML, PDF, DOCX, CSV or FAQ JSON"
    )


def from_text(title: str, text: str, *, source: str = "text", settings: KnowledgeSettings) -> ParsedDocument:
    """Raw text pasted by an admin; Markdown headings, if any, still become breadcrumbs."""
    from knowledge.loaders.text import load_markdown

    if len(text) > settings.max_extracted_chars:
        raise DocumentTooLarge(f"the text has more than {settings.max_extracted_chars} characters")
    parsed = load_markdown(text, title=title.strip() or "Untitled", source=source)
    parsed = ParsedDocument(title=title.strip() or parsed.title, source=source, sections=parsed.sections)
    if parsed.is_empty():
        raise ParseFailed("the text is empty")
    return parsed


def from_faq(
    pairs: Iterable[Mapping[str, object]],
    *,
    title: str = "FAQ",
    source: str = "faq",
    settings: KnowledgeSettings,
) -> ParsedDocument:
    from knowledge.loaders.tabular import load_faq_pairs

    parsed = load_faq_pairs(pairs, title=title, source=source, settings=settings)
    if parsed.is_empty():
        raise ParseFailed("no question/answer pairs were given")
    return parsed
