"""HTML pages, without scripts, styles or text a browser would not show."""

import re

from bs4 import BeautifulSoup, Comment, Tag
from bs4.element import NavigableString

from knowledge.documents import ParsedDocument, Section
from knowledge.loaders.text import clean_text

__all__ = ["load_html"]

_DROPPED_TAGS = (
    "script",
    "style",
    "noscript",
    "template",
    "iframe",
    "object",
    "embed",
    "svg",
    "canvas",
    "head",
    "meta",
    "link",
    "button",
    "select",
    "input",
    "textarea",
    "form",
)
_HIDDEN_STYLE = re.compile(
    r"(display\s*:\s*none|visibility\s*:\s*hidden|opacity\s*:\s*0(\.0+)?\s*(;|$)"
    r"|font-size\s*:\s*0+(px|em|rem|pt|%)?\s*(;|$))",
    re.IGNORECASE,
)
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCKS = frozenset(
    [
        "p",
        "div",
        "section",
        "article",
        "main",
        "aside",
        "header",
        "footer",
        "nav",
        "li",
        "ul",
        "ol",
        "table",
        "tr",
        "thead",
        "tbody",
        "pre",
        "blockquote",
        "dl",
        "dt",
        "dd",
        "br",
        "hr",
        "figure",
        "figcaption",
        "details",
        "summary",
        "address",
    ]
)


def _is_hidden(tag: Tag) -> bool:
    if tag.has_attr("hidden"):
        return True
    if str(tag.get("aria-hidden", "")).strip().lower() == "true":
        return True
    style = tag.get("style")
    return bool(style and _HIDDEN_STYLE.search(str(style)))


def _drop_invisible(soup: BeautifulSoup) -> None:
    """Scripts, styles, comments and hidden elements: nothing a reader sees."""
    for tag in soup.find_all(_DROPPED_TAGS):
        tag.decompose()
    for comment in soup.find_all(string=lambda s: isinstance(s, Comment)):
        comment.extract()
    for tag in soup.find_all(True):
        # A parent decomposed earlier leaves its children detached; skip those.
        if isinstance(tag, Tag) and tag.attrs is not None and _is_hidden(tag):
            tag.decompose()


def load_html(markup: str, *, title: str, source: str) -> ParsedDocument:
    soup = BeautifulSoup(markup, "html.parser")
    page_title = clean_text(soup.title.get_text(" ")) if soup.title else ""
    _drop_invisible(soup)

    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    buffer: list[str] = []
    first_h1 = ""

    def flush() -> None:
        body = clean_text("".join(buffer))
        if body:
            sections.append(Section(tuple(h for _, h in stack), body))
        buffer.clear()

    def walk(node: Tag) -> None:
        nonlocal first_h1
        for child in node.children:
            if isinstance(child, NavigableString):
                buffer.append(str(child))
            elif isinstance(child, Tag):
                level = _HEADINGS.get(child.name)
                if level is not None:
                    flush()
                    heading = clean_text(child.get_text(" "))
                    if level == 1 and not first_h1:
                        first_h1 = heading
                    while stack and stack[-1][0] >= level:
                        stack.pop()
                    if heading:
                        stack.append((level, heading))
                    continue
                block = child.name in _BLOCKS
                if block:
                    buffer.append("\n")
                if child.name in ("td", "th"):
                    buffer.append(" | ")
                walk(child)
                if block:
                    buffer.append("\n")

    root = soup.body or soup
    walk(root)
    flush()
    return ParsedDocument(title=page_title or first_h1 or title, source=source, sections=sections)
