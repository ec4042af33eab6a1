from knowledge.chunking import chunk_document, embedding_text
from knowledge.documents import QA, ParsedDocument, Section
from knowledge.settings import KnowledgeSettings


def test_breadcrumbs_faq_whole_and_stable_ids() -> None:
    long_text = " ".join(f"Sentence number {i} about descaling the machine." for i in range(60))
    long_answer = "Answer " * 300
    doc = ParsedDocument(
        title="Guide",
        source="guide.md",
        sections=[Section(("Guide", "Cleaning"), long_text), Section((), "Short intro.")],
        faq=[QA("How long is the answer?", long_answer)],
    )
    settings = KnowledgeSettings(chunk_size=300, chunk_overlap=60)
    chunks = chunk_document("doc-1", doc, settings)
    text_chunks = [c for c in chunks if c.kind == "text"]
    assert len(text_chunks) > 5
    assert all(len(c.text) <= 300 for c in text_chunks)
    assert all(c.heading_path == ("Guide", "Cleaning") for c in text_chunks[:-1])
    faq = [c for c in chunks if c.kind == "faq"]
    assert len(faq) == 1 and faq[0].text == f"Q: How long is the answer?\nA: {long_answer}"
    assert [c.id for c in chunks] == [f"doc-1:{n}" for n in range(len(chunks))]
    assert chunk_document("doc-1", doc, settings) == chunks


def test_overlap_carries_context_between_chunks() -> None:
    text = " ".join(f"w{i}" for i in range(400))
    chunks = chunk_document(
        "d", ParsedDocument("T", "s", [Section((), text)]), KnowledgeSettings(chunk_size=200, chunk_overlap=50)
    )
    first_tail = chunks[0].text.split()[-3:]
    assert all(word in chunks[1].text.split() for word in first_tail)


def test_chinese_splits_on_sentence_ends() -> None:
    text = "退货政策很简单。" * 100
    chunks = chunk_document(
        "zh",
        ParsedDocument("退货", "s", [Section(("退货",), text)]),
        KnowledgeSettings(chunk_size=100, chunk_overlap=16),
    )
    assert all(c.text.endswith("。") for c in chunks)


def test_embedding_text_carries_title_and_breadcrumb_once() -> None:
    doc = ParsedDocument("Returns", "r.md", [Section(("Returns", "Timing"), "Allow 5 days.")])
    chunk = chunk_document("r", doc, KnowledgeSettings())[0]
    assert embedding_text(doc.title, chunk) == "Returns > Timing\nAllow 5 days."
