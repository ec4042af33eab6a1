import functools

import pytest

from knowledge import sandbox
from knowledge.errors import DecompressionBomb, DocumentTooLarge, ParseFailed
from knowledge.sandbox import parse_in_subprocess
from knowledge.settings import KnowledgeSettings
from tests.knowledge import samples

MiB = 1024 * 1024
S = KnowledgeSettings(parse_cpu_seconds=5, parse_wall_seconds=20, parse_memory_bytes=768 * MiB)


@functools.cache
def pdf_bomb() -> bytes:
    return samples.make_flate_bomb_pdf(100 * MiB)


def assert_worker_alive() -> None:
    doc = parse_in_subprocess(b"# Still here\nfine", "ok.md", None, S)
    assert doc.title == "Still here"


def test_parses_in_a_child() -> None:
    doc = parse_in_subprocess(samples.make_docx(), "g.docx", None, S)
    assert doc.sections[0].heading_path == ("Grinding",)


def test_zip_bomb_docx_is_refused_before_inflating() -> None:
    bomb = samples.make_zip_bomb_docx(40 * MiB)
    assert len(bomb) < 200_000
    with pytest.raises(DecompressionBomb) as info:
        parse_in_subprocess(bomb, "report.docx", None, S)
    assert "zip bomb" in info.value.detail or "expands" in info.value.detail
    assert_worker_alive()


def test_zip_bomb_under_ratio_but_over_total_is_refused() -> None:
    settings = KnowledgeSettings(max_decompressed_bytes=5 * MiB, max_compression_ratio=10_000)
    with pytest.raises(DecompressionBomb):
        parse_in_subprocess(samples.make_zip_bomb_docx(8 * MiB), "r.docx", None, settings)


def test_pdf_flate_bomb_is_refused() -> None:
    data = pdf_bomb()
    assert len(data) < 1_000_000
    with pytest.raises(ParseFailed):
        parse_in_subprocess(data, "bomb.pdf", None, S)
    assert_worker_alive()


def test_pdf_bomb_under_a_tight_memory_cap_fails_cleanly() -> None:
    # Whichever limit trips first (pypdf's or the address space), the caller gets ParseFailed.
    tight = KnowledgeSettings(parse_memory_bytes=200 * MiB, parse_cpu_seconds=5)
    with pytest.raises(ParseFailed):
        parse_in_subprocess(pdf_bomb(), "bomb.pdf", None, tight)
    assert_worker_alive()


def test_pdf_with_huge_page_count_is_refused() -> None:
    data = samples.make_many_pages_pdf(3000)
    assert len(data) < 400_000
    with pytest.raises(DocumentTooLarge) as info:
        parse_in_subprocess(data, "many.pdf", None, KnowledgeSettings(max_pdf_pages=1000))
    assert "3000 pages" in info.value.detail


def test_parser_loop_is_killed_by_the_cpu_limit() -> None:
    settings = KnowledgeSettings(parse_cpu_seconds=1, parse_wall_seconds=20)
    with pytest.raises(ParseFailed) as info:
        parse_in_subprocess(b"x", "x.txt", None, settings, parser=samples.loop_forever)
    assert "CPU" in info.value.detail
    assert_worker_alive()


def test_memory_hog_is_stopped_by_the_address_space_limit() -> None:
    settings = KnowledgeSettings(parse_memory_bytes=300 * MiB)
    with pytest.raises(ParseFailed) as info:
        parse_in_subprocess(b"x", "x.txt", None, settings, parser=samples.eat_memory)
    assert "memory" in info.value.detail
    assert_worker_alive()


def test_wall_clock_timeout() -> None:
    settings = KnowledgeSettings(parse_wall_seconds=0.5)
    with pytest.raises(ParseFailed) as info:
        parse_in_subprocess(b"x", "x.txt", None, settings, parser=samples.sleep_forever)
    assert "longer than" in info.value.detail
    assert_worker_alive()


def test_child_that_dies_becomes_parse_failed() -> None:
    with pytest.raises(ParseFailed) as info:
        parse_in_subprocess(b"x", "x.txt", None, S, parser=samples.crash_hard)
    assert "exited unexpectedly" in info.value.detail
    assert_worker_alive()


def test_oversized_upload_is_refused_before_any_worker_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_worker() -> None:
        raise AssertionError("a worker was started")

    monkeypatch.setattr(sandbox, "_mp_context", no_worker)
    with pytest.raises(DocumentTooLarge) as info:
        parse_in_subprocess(b"x" * 101, "big.txt", None, KnowledgeSettings(max_upload_bytes=100))
    assert info.value.code == "too_long"


def test_html_with_scripts_through_the_worker() -> None:
    html = b"<h1>Page</h1><p>Text</p><script>document.cookie</script><p style='display:none'>evil</p>"
    doc = parse_in_subprocess(html, "p.html", "text/html", S)
    body = " ".join(s.text for s in doc.sections)
    assert "cookie" not in body and "evil" not in body and "Text" in body
