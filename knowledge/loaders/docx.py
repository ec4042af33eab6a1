"""Word documents through python-docx, after a zip-bomb check."""

import io
import zipfile

import docx
from docx.opc.exceptions import PackageNotFoundError

from knowledge.documents import ParsedDocument, Section
from knowledge.errors import DecompressionBomb, ParseFailed
from knowledge.loaders.text import clean_text
from knowledge.settings import KnowledgeSettings

__all__ = ["check_zip", "load_docx"]


def check_zip(data: bytes, settings: KnowledgeSettings) -> None:
    """Refuse an archive whose declared sizes exceed the limits, before anything inflates it.

    zipfile stops reading a member at its declared size, so the declared sizes bound what
    python-docx can inflate later.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as exc:
        raise ParseFailed(f"the file is not a valid DOCX (zip) archive: {exc}") from exc
    if len(infos) > 10_000:
        raise DecompressionBomb(f"the archive holds {len(infos)} files")
    total = 0
    for info in infos:
        total += info.file_size
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > 1024 * 1024 and ratio > settings.max_compression_ratio:
            raise DecompressionBomb(
                f"archive member {info.filename[:80]!r} expands {ratio:.0f} times; it looks like a zip bomb"
            )
    if total > settings.max_decompressed_bytes:
        raise DecompressionBomb(f"the archive expands to {total} bytes; the limit is {settings.max_decompressed_bytes}")


def _heading_level(style_name: str) -> int | None:
    if style_name.startswith("Heading "):
        tail = style_name.removeprefix("Heading ").strip()
        if tail.isdigit():
            return int(tail)
    return None


def load_docx(data: bytes, *, title: str, source: str, settings: KnowledgeSettings) -> ParsedDocument:
    check_zip(data, settings)
    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ParseFailed(f"the DOCX could not be read: {exc}") from exc

    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    buffer: list[str] = []
    doc_title = clean_text(document.core_properties.title or "")

    def flush() -> None:
        body = clean_text("\n".join(buffer))
        if body:
            sections.append(Section(tuple(h for _, h in stack), body))
        buffer.clear()

    for paragraph in document.paragraphs:
        style = paragraph.style.name if paragraph.style is not None else ""
        text = paragraph.text
        if style == "Title" and not doc_title:
            doc_title = clean_text(text)
            continue
        level = _heading_level(style or "")
        if level is None:
            buffer.append(text)
            continue
        flush()
        while stack and stack[-1][0] >= level:
            stack.pop()
        heading = clean_text(text)
        if heading:
            stack.append((level, heading))
    flush()
    for table in document.tables:
        rows = [" | ".join(clean_text(cell.text) for cell in row.cells) for row in table.rows]
        body = clean_text("\n".join(rows))
        if body:
            sections.append(Section(("Table",), body))
    return ParsedDocument(title=doc_title or title, source=source, sections=sections)
