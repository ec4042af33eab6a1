import json

import pytest

from knowledge.errors import DocumentTooLarge, ParseFailed, UnsupportedFormat
from knowledge.loaders import parse_document
from knowledge.settings import KnowledgeSettings
from knowledge.sources import detect_format, from_faq, from_text, safe_filename
from tests.knowledge.samples import make_docx, make_pdf

S = KnowledgeSettings()


def texts(doc: object) -> str:
    return "\n".join(s.text for s in doc.sections)  # type: ignore[attr-defined]


def test_plain_text_strips_zero_width_and_controls() -> None:
    doc = parse_document("Re\u200bturns are\u2060 free.\x07\r\nSecond line".encode(), "notes.txt", None, S)
    assert doc.title == "notes"
    assert texts(doc) == "Returns are free.\nSecond line"


def test_markdown_heading_breadcrumbs_and_code_fences() -> None:
    md = "# Guide\nintro\n## Setup\nstep one\n```\n# not a heading\n```\n### Deep\ndeep text\n## Other\nmore"
    doc = parse_document(md.encode(), "guide.md", None, S)
    assert doc.title == "Guide"
    paths = [s.heading_path for s in doc.sections]
    assert paths == [("Guide",), ("Guide", "Setup"), ("Guide", "Setup", "Deep"), ("Guide", "Other")]
    assert "# not a heading" in doc.sections[1].text


def test_html_drops_scripts_styles_and_hidden_text() -> None:
    html = """<html><head><title>Help</title><style>p{}</style><script>steal()</script></head><body>
    <h1>Top</h1><p>Visible text.</p>
    <p hidden>HIDDEN-ATTR</p><div aria-hidden="true">HIDDEN-ARIA</div>
    <span style="display : none">HIDDEN-DISPLAY</span><span style="visibility:hidden">HIDDEN-VIS</span>
    <noscript>NOSCRIPT</noscript><template><p>TEMPLATE</p></template><!-- COMMENT -->
    <iframe src="x">IFRAME</iframe><script type="application/ld+json">{"a": "JSONLD"}</script>
    <h2>Sub</h2><p>Zero\u200bwidth</p></body></html>"""
    doc = parse_document(html.encode(), "page.html", None, S)
    body = texts(doc)
    assert doc.title == "Help"
    assert "Visible text." in body and "Zerowidth" in body
    for needle in ("steal", "HIDDEN", "NOSCRIPT", "TEMPLATE", "COMMENT", "IFRAME", "JSONLD", "p{}"):
        assert needle not in body
    assert [s.heading_path for s in doc.sections] == [("Top",), ("Top", "Sub")]


def test_pdf_one_section_per_page() -> None:
    doc = parse_document(make_pdf(["Warranty lasts two years", "Returns within 30 days"]), "policy.pdf", None, S)
    assert [s.heading_path for s in doc.sections] == [("Page 1",), ("Page 2",)]
    assert "two years" in doc.sections[0].text


def test_docx_headings_and_tables() -> None:
    doc = parse_document(make_docx(), "guide.docx", None, S)
    assert doc.title == "Espresso guide"
    assert doc.sections[0].heading_path == ("Grinding",)
    assert doc.sections[1].heading_path == ("Grinding", "Milk")
    assert "E204 | Heater fault" in texts(doc)


def test_csv_question_answer_pairs_with_header() -> None:
    data = 'Answer,Question\nThirty days.,How long to return?\n"Yes, free.",Is shipping free?\n'
    doc = parse_document(data.encode(), "faq.csv", None, S)
    assert [(q.question, q.answer) for q in doc.faq] == [
        ("How long to return?", "Thirty days."),
        ("Is shipping free?", "Yes, free."),
    ]


def test_csv_without_header_uses_first_two_columns() -> None:
    doc = parse_document(b"Q1?;A1\nQ2?;A2\n", "faq.csv", None, S)
    assert [q.question for q in doc.faq] == ["Q1?", "Q2?"]


def test_faq_json_file() -> None:
    data = json.dumps([{"question": "Do you ship to Canada?", "answer": "Yes."}]).encode()
    doc = parse_document(data, "faq.json", None, S)
    assert doc.faq[0].answer == "Yes."
    with pytest.raises(ParseFailed):
        parse_document(b'[{"question": 1}]', "faq.json", None, S)


def test_raw_text_and_faq_pairs() -> None:
    doc = from_text("Pasted", "## Hours\nWe open at 9.", settings=S)
    assert doc.title == "Pasted" and doc.sections[0].heading_path == ("Hours",)
    faq = from_faq([{"question": "Q?", "answer": "A."}], settings=S)
    assert faq.faq[0].question == "Q?"
    with pytest.raises(ParseFailed):
        from_text("Empty", "  \n ", settings=S)
    with pytest.raises(ParseFailed):
        from_faq([], settings=S)


def test_format_detection() -> None:
    assert detect_format("a.MD", None) == "markdown"
    assert detect_format("index.url", "text/html; charset=utf-8") == "html"
    with pytest.raises(UnsupportedFormat) as info:
        detect_format("evil.exe", "application/octet-stream")
    assert info.value.code == "validation_failed"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd.md", "passwd.md"),
        ("..\\..\\windows\\system32\\a.txt", "a.txt"),
        ("/abs/path/x.html", "x.html"),
        ("..", "upload"),
        ("we\x00ird\nname.txt", "we_ird_name.txt"),
    ],
)
def test_path_traversal_in_filenames_is_reduced_to_a_label(name: str, expected: str) -> None:
    assert safe_filename(name) == expected


def test_parsed_source_never_carries_a_path(tmp_path: object) -> None:
    doc = parse_document(b"# T\nhello", "../../../tmp/evil.md", None, S)
    assert doc.source == "evil.md"


def test_oversized_and_binary_and_empty_inputs_are_refused() -> None:
    small = KnowledgeSettings(max_upload_bytes=10)
    with pytest.raises(DocumentTooLarge) as info:
        parse_document(b"x" * 11, "a.txt", None, small)
    assert info.value.code == "too_long"
    with pytest.raises(UnsupportedFormat):
        parse_document(b"\x00\x01\x02binary", "a.txt", None, S)
    with pytest.raises(ParseFailed):
        parse_document(b"abc \x80\x81 not utf8", "a.md", None, S)
    with pytest.raises(ParseFailed):
        parse_document(b"<html><script>only()</script></html>", "a.html", None, S)
    with pytest.raises(ParseFailed):
        parse_document(b"not a pdf", "a.pdf", None, S)
    with pytest.raises(ParseFailed):
        parse_document(b"not a zip", "a.docx", None, S)


def test_extracted_text_limit() -> None:
    with pytest.raises(DocumentTooLarge):
        parse_document(b"word " * 100, "a.txt", None, KnowledgeSettings(max_extracted_chars=50))


def test_content_hash_ignores_whitespace_and_title() -> None:
    a = from_text("A", "Hello   world", settings=S)
    b = from_text("B", "Hello world", settings=S)
    c = from_text("A", "Hello there", settings=S)
    assert a.content_hash() == b.content_hash() != c.content_hash()
