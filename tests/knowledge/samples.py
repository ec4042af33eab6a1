"""Builders of small test files (PDF, DOCX, bombs) and stand-in parsers for the sandbox."""

import io
import zipfile
import zlib

from knowledge.documents import ParsedDocument, Section
from knowledge.settings import KnowledgeSettings


def _pdf(objects: list[bytes]) -> bytes:
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def make_pdf(pages: list[str]) -> bytes:
    """A valid PDF with one text line per page (Helvetica, WinAnsi text only)."""
    n = len(pages)
    kids = b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(n))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % n,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, text in enumerate(pages):
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1")
        stream = b"BT /F1 12 Tf 72 720 Td (" + escaped + b") Tj ET"
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >>"
            b" /Contents %d 0 R >>" % (5 + 2 * i)
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    return _pdf(objects)


def make_many_pages_pdf(count: int) -> bytes:
    """``count`` pages sharing one empty content stream: small on disk, huge page count."""
    kids = b" ".join(b"%d 0 R" % (4 + i) for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % count,
        b"<< /Length 0 >>\nstream\n\nendstream",
    ]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R >>"] * count
    return _pdf(objects)


def make_flate_bomb_pdf(inflated_bytes: int) -> bytes:
    """One page whose content stream inflates to ``inflated_bytes`` of text operators."""
    chunk = b"BT /F1 12 Tf 72 720 Td (AAAAAAAAAAAAAAAA) Tj ET\n" * 20_000
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(chunk) for _ in range(max(1, inflated_bytes // len(chunk)))]
    parts.append(compressor.flush())
    data = b"".join(parts)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >>"
        b" /Contents 5 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream",
    ]
    return _pdf(objects)


def make_docx() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Espresso guide", level=0)
    document.add_heading("Grinding", level=1)
    document.add_paragraph("Grind 18 grams finely for a double shot.")
    document.add_heading("Milk", level=2)
    document.add_paragraph("Steam the milk to 60 degrees.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Code"
    table.cell(0, 1).text = "Meaning"
    table.cell(1, 0).text = "E204"
    table.cell(1, 1).text = "Heater fault"
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def make_zip_bomb_docx(inflated_bytes: int) -> bytes:
    """A DOCX-shaped zip whose document.xml inflates to ``inflated_bytes`` of zeros."""
    real = zipfile.ZipFile(io.BytesIO(make_docx()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bomb:
        for info in real.infolist():
            if info.filename != "word/document.xml":
                bomb.writestr(info, real.read(info))
        with bomb.open("word/document.xml", "w", force_zip64=True) as member:
            block = b"\0" * (1024 * 1024)
            for _ in range(inflated_bytes // len(block)):
                member.write(block)
    return buffer.getvalue()


# Stand-in parsers for the sandbox; module level so the worker can import them.


def loop_forever(data: bytes, filename: str, content_type: str | None, settings: KnowledgeSettings) -> ParsedDocument:
    n = 0
    while True:
        n += 1


def eat_memory(data: bytes, filename: str, content_type: str | None, settings: KnowledgeSettings) -> ParsedDocument:
    hog = []
    while True:
        hog.append(bytearray(50 * 1024 * 1024))


def sleep_forever(data: bytes, filename: str, content_type: str | None, settings: KnowledgeSettings) -> ParsedDocument:
    import time

    time.sleep(3600)
    raise AssertionError("unreachable")


def crash_hard(data: bytes, filename: str, content_type: str | None, settings: KnowledgeSettings) -> ParsedDocument:
    import os

    os._exit(3)


def echo(data: bytes, filename: str, content_type: str | None, settings: KnowledgeSettings) -> ParsedDocument:
    return ParsedDocument(title=filename, source=filename, sections=[Section((), data.decode())])
