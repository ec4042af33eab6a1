"""The search hot path: the in-memory copy of a knowledge base, the keyword index's tolerance of
how people type, and the top k holding distinct documents."""

import numpy as np
import pytest

from knowledge.documents import ParsedDocument, Section
from knowledge.keyword import KeywordIndex
from knowledge.scope import ScopeModel, ScopeSignals
from knowledge.service import KnowledgeService
from knowledge.store import MemoryIndex, StoredChunk


def _unit(rng: np.random.Generator, dimension: int = 16) -> list[float]:
    v = rng.standard_normal(dimension)
    return list(v / np.linalg.norm(v))


def test_the_in_memory_copy_keeps_each_live_chunk_and_its_vector_after_removals_and_compaction() -> None:
    rng = np.random.default_rng(7)
    memory = MemoryIndex(16)
    vectors = {f"c{i}": _unit(rng) for i in range(2500)}
    for cid, vector in vectors.items():
        memory.put(StoredChunk(cid, f"text {cid}", {"content_hash": "h"}, embedding=vector), f"text {cid}")
    removed = {f"c{i}" for i in range(0, 2500, 2)} | {f"c{i}" for i in range(1, 1200, 2)}
    for cid in removed:
        memory.remove(cid)  # more dead than alive: the copy compacts itself on the way
    memory.put(StoredChunk("c1", "replaced", {"content_hash": "h2"}, embedding=vectors["c1"]), "replaced")
    live = {cid: v for cid, v in vectors.items() if cid not in removed or cid == "c1"}
    assert len(memory) == len(live)
    query = np.asarray(_unit(rng), dtype=np.float32)
    for cid, vector in live.items():
        assert abs(memory.similarity(query, cid) - float(np.dot(query, vector))) < 1e-5  # type: ignore[operator]
    assert memory.similarity(query, "c0") is None
    assert memory.chunk("c1") is not None and memory.chunk("c1").text == "replaced"  # type: ignore[union-attr]
    assert memory.chunk("c0") is None and "c0" not in memory
    assert memory.keyword.search("replaced", 5)[0].chunk_id == "c1"
    assert memory.hashes()["c1"] == "h2"


def test_a_typo_or_another_form_of_an_indexed_word_still_counts_as_known() -> None:
    index = KeywordIndex()
    index.add("plans", "Our broadband plans: Fibre 900 is the fastest. Cancel any time by phone.")
    index.add("billing", "Bills are sent by email each month.")
    assert index.search("braodband plans", 2)[0].chunk_id == "plans"
    assert index.search("can i cancell", 2)[0].chunk_id == "plans"
    assert index.unknown_share("braodband") == 0.0
    assert index.unknown_share("cancelling by email") == 0.0
    # A word the knowledge base never mentions stays unknown; question-frame words are no topic.
    assert index.unknown_share("do you take bitcoin") == 1.0
    assert index.unknown_share("how long does it take") == 0.0


def test_the_top_k_holds_one_chunk_per_document(hash_service: KnowledgeService) -> None:
    hash_service.create_kb("kb")
    long_page = [Section(("Gaskets", f"Part {n}"), f"gasket seal ring size {n} " * 60) for n in range(6)]
    hash_service.ingest("kb", "long", ParsedDocument(title="Gaskets", source="long.md", sections=long_page))
    for n in range(4):
        text = f"gasket seal note {n}"
        hash_service.ingest("kb", f"short{n}", ParsedDocument(title=f"S{n}", source=f"s{n}.md",
                                                              sections=[Section((f"S{n}",), text)]))
    found = hash_service.retrieve("kb", "gasket seal", 5, threshold=0.0)
    documents = [h.document_id for h in found.hits]
    assert len(documents) == len(set(documents)) == 5


def test_the_frame_of_a_chinese_question_is_no_topic_the_knowledge_base_must_know() -> None:
    index = KeywordIndex()
    index.add("transfer", "携号转网：发送短信获取授权码，转网一般 24 小时内完成。")
    # "大概", "能不能", "有没有" only frame the question; the topic words are all known.
    assert index.unknown_share("转网大概要多久") == 0.0
    assert index.unknown_share("能不能转网") == 0.0
    assert index.unknown_share("有没有授权码") == 0.0
    assert index.search("转网大概要多久", 1)[0].coverage == 1.0
    # A topic the page never mentions stays unknown however it is framed.
    assert index.unknown_share("能不能办宽带") == 1.0


def test_a_number_inside_another_code_is_not_the_code_the_question_names() -> None:
    index = KeywordIndex()
    index.add("router", "Open 192.168.1.1 in a browser to reach the router.")
    index.add("kettle", "The AC-2041 kettle boils in two minutes. Call 10086 for help.")
    assert not index.search("能办192号段的卡吗", 2)[0].exact_term  # a part of an IP address
    hits = {h.chunk_id: h.exact_term for h in index.search("192.168.1.1 ac2041 10086", 2)}
    assert hits == {"router": True, "kettle": True}  # written whole, or the same code unhyphenated


def test_an_unknown_model_name_in_a_chinese_question_weighs_as_it_does_in_an_english_one() -> None:
    index = KeywordIndex()
    index.add("s2", "S2 滑板车已经上市，续航 40 公里。")
    latin, cjk = index.unknown_shares("S3 滑板车什么时候上市")  # content units: S3, 滑 板 车, 上 市
    assert latin == pytest.approx(1 / 6) and cjk == 0.0
    assert index.unknown_shares("S2 滑板车续航多少") == (0.0, 0.0)
    model = ScopeModel((0.0, 0.0, 0.0, 0.0, 0.0, -6.0, -1.0), 0.0)
    named = ScopeSignals(0.5, 0.2, 0.8, 0.5, unknown=latin + cjk, cjk=True, unknown_latin=latin)
    characters = ScopeSignals(0.5, 0.2, 0.8, 0.5, unknown=latin + cjk, cjk=True, unknown_latin=0.0)
    english = ScopeSignals(0.5, 0.2, 0.8, 0.5, unknown=latin + cjk)
    assert model.probability(named) == pytest.approx(model.probability(english))
    assert model.probability(named) < model.probability(characters)


def test_a_number_with_its_chinese_unit_finds_that_measure_not_the_same_number_of_another_unit() -> None:
    index = KeywordIndex()
    index.add("prices", "| 日本 | 30 元/天 | 1GB |\n| 韩国 | 30 元/天 | 1GB |\n| 泰国 | 30 元/天 | 2GB |")
    index.add("cable", "入户走线 30 米以内免费，超过的部分按 5 元/米收取材料费。")
    assert index.search("30米多少钱", 2)[0].chunk_id == "cable"
    assert index.search("日本流量包30元一天", 2)[0].chunk_id == "prices"
