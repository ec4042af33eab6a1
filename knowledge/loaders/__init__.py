"""Loaders that turn an uploaded file's bytes into a ParsedDocument (in the calling process;
``knowledge.sandbox`` runs them in a bounded worker)."""

from knowledge.documents import ParsedDocument
from knowledge.errors import DocumentTooLarge, ParseFailed, UnsupportedFormat
from knowledge.loaders.docx import load_docx
from knowledge.loaders.html import load_html
from knowledge.loaders.pdf import load_pdf
from knowledge.loaders.tabular import load_faq_csv, load_faq_json
from knowledge.loaders.text import decode_text, load_markdown, load_plain_text
from knowledge.settings import KnowledgeSettings
from knowledge.sources import detect_format, safe_filename, title_from_filename

__all__ = ["parse_document"]


def parse_document(data: bytes, filename: str, content_type: str | None, settings: KnowledgeSettings) -> ParsedDocument:
    if len(data) > settings.max_upload_bytes:
        raise DocumentTooLarge(f"the file has {len(data)} bytes; the limit is {settings.max_upload_bytes}")
    name = safe_filename(filename)
    kind = detect_format(name, content_type)
    title = title_from_filename(name)
    try:
        if kind == "pdf":
            parsed = load_pdf(data, title=title, source=name, settings=settings)
        elif kind == "docx":
            parsed = load_docx(data, title=title, source=name, settings=settings)
        else:
            if b"\x00" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise UnsupportedFormat(f"{name!r} looks binary, not {kind}")
            text = decode_text(data)
            if kind == "html":
                parsed = load_html(text, title=title, source=name)
            elif kind == "markdown":
                parsed = load_markdown(text, title=title, source=name)
            elif kind == "csv":
                parsed = load_faq_csv(text, title=title, source=name, settings=settings)
            elif kind == "faq_json":
                parsed = load_faq_json(text, title=title, source=name, settings=settings)
            else:
                parsed = load_plain_text(text, title=title, source=name)
    except RecursionError as exc:
        raise ParseFailed(f"{name!r} is nested too deeply to parse") from exc
    if parsed.char_count() > settings.max_extracted_chars:
        raise DocumentTooLarge(f"{name!r} holds more than {settings.max_extracted_chars} characters of text")
    if parsed.is_empty():
        raise ParseFailed(f"no text could be extracted from {name!r}")
    return parsed
