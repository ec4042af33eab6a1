"""PDF text through pypdf, one section per page."""

import io
import logging

from pypdf import PdfReader
from pypdf.errors import LimitReachedError, PdfReadError

from knowledge.documents import ParsedDocument, Section
from knowledge.errors import DecompressionBomb, DocumentTooLarge, ParseFailed
from knowledge.loaders.text import clean_text
from knowledge.settings import KnowledgeSettings

__all__ = ["load_pdf"]


def load_pdf(data: bytes, *, title: str, source: str, settings: KnowledgeSettings) -> ParsedDocument:
    if not data.startswith(b"%PDF-"):
        raise ParseFailed("the file does not start like a PDF")
    # pypdf logs every repaired defect; a hostile file would flood the log.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise ParseFailed("the PDF is encrypted")
        page_count = len(reader.pages)
        if page_count > settings.max_pdf_pages:
            raise DocumentTooLarge(f"the PDF has {page_count} pages; the limit is {settings.max_pdf_pages}")
        meta_title = ""
        if reader.metadata is not None and reader.metadata.title:
            meta_title = clean_text(str(reader.metadata.title))
        sections: list[Section] = []
        total = 0
        for number, page in enumerate(reader.pages, start=1):
            text = clean_text(page.extract_text() or "")
            total += len(text)
            if total > settings.max_extracted_chars:
                raise DocumentTooLarge(f"the PDF holds more than {settings.max_extracted_chars} characters of text")
            if text:
                sections.append(Section((f"Page {number}",), text))
    except LimitReachedError as exc:
        raise DecompressionBomb("a stream of the PDF inflates past the safety limit; it looks like a PDF bomb") from exc
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ParseFailed(f"the PDF could not be read: {exc}") from exc
    return ParsedDocument(title=meta_title or title, source=source, sections=sections)
