"""Plain text and Markdown, and the text clean-up every loader shares."""

import re
import unicodedata

from knowledge.documents import ParsedDocument, Section
from knowledge.errors import ParseFailed

__all__ = ["clean_text", "decode_text", "load_markdown", "load_plain_text"]

# Zero-width and bidi-control characters hide instructions from a human reader of the page
# while the model still sees them.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u00ad\u180e]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\u00a0\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_ATX_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")


def clean_text(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    text = _INVISIBLE.sub("", text)
    text = _CONTROL.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def decode_text(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseFailed(f"the file is not UTF-8 text (byte {exc.start})") from exc


def load_plain_text(text: str, *, title: str, source: str) -> ParsedDocument:
    body = clean_text(text)
    return ParsedDocument(title=title, source=source, sections=[Section((), body)] if body else [])


def load_markdown(text: str, *, title: str, source: str) -> ParsedDocument:
    """Split on ATX headings; the heading stack becomes each section's breadcrumb."""
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    buffer: list[str] = []
    in_fence = False
    doc_title = ""

    def flush() -> None:
        body = clean_text("\n".join(buffer))
        if body:
            sections.append(Section(tuple(h for _, h in stack), body))
        buffer.clear()

    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            buffer.append(line)
            continue
        match = None if in_fence else _ATX_HEADING.match(line)
        if match is None:
            buffer.append(line)
            continue
        flush()
        level = len(match.group(1))
        heading = clean_text(match.group(2))
        if level == 1 and not doc_title:
            doc_title = heading
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, heading))
    flush()
    return ParsedDocument(title=doc_title or title, source=source, sections=sections)
