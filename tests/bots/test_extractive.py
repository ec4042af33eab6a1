"""The no-model answer: cited quotes, in the user's language when the knowledge base has it."""

from bots.extractive import OTHER_LANGUAGE_NOTE, extractive_answer
from bots.ports import Passage

EN = Passage(
    "lib:1", "d-cards", "Library cards", "https://library.example/cards", "Cards",
    "Library cards are valid for five years.", 0.9, highlights=("Library cards are valid for five years.",),
)
ZH = Passage(
    "lib:2", "d-cards-zh", "借书证", "https://library.example/zh/cards", "借书证",
    "借书证有效期为五年。", 0.8, highlights=("借书证有效期为五年。",),
)


def test_a_chinese_question_is_answered_from_the_chinese_page_when_the_kb_has_one() -> None:
    answer = extractive_answer("借书证有效期多久？", [EN, ZH], threshold=0.5)
    assert answer.text.startswith("根据《借书证》[1]：借书证有效期为五年。")
    assert answer.citations[0].document_id == "d-cards-zh"
    assert OTHER_LANGUAGE_NOTE["zh"] not in answer.text


def test_an_answer_from_the_other_language_says_so_and_keeps_its_citation() -> None:
    zh = extractive_answer("借书证有效期多久？", [EN], threshold=0.5)
    quote = "根据《Library cards》[1]：Library cards are valid for five years."
    assert zh.text == OTHER_LANGUAGE_NOTE["zh"] + "\n\n" + quote
    assert [c.document_id for c in zh.citations] == ["d-cards"] and not zh.abstained
    en = extractive_answer("How long is a library card valid?", [ZH], threshold=0.5)
    assert en.text == OTHER_LANGUAGE_NOTE["en"] + "\n\nFrom \"借书证\" [1]: 借书证有效期为五年。"


def test_the_citation_format_stays() -> None:
    answer = extractive_answer("How long is a library card valid?", [EN], threshold=0.5)
    assert answer.text == 'From "Library cards" [1]: Library cards are valid for five years.'
    citation = answer.citations[0]
    assert (citation.document_id, citation.title, citation.source, citation.chunk_id) == (
        "d-cards", "Library cards", "https://library.example/cards", "lib:1",
    )


def test_a_second_page_is_quoted_only_when_it_also_answers() -> None:
    fines = Passage(
        "lib:3", "d-fines", "Late returns", "https://library.example/fines", "Fines",
        "Late books cost 20p a day.", 0.7, highlights=("Late books cost 20p a day.",),
    )
    events = Passage(
        "lib:4", "d-events", "Events", "https://library.example/events", "Events",
        "Story time books for children are read on Saturdays.", 0.7,
        highlights=("Story time books for children are read on Saturdays.",),
    )
    renew = Passage(
        "lib:5", "d-renew", "Renewing", "https://library.example/renew", "Renewing",
        "Renew late books online to stop the daily cost.", 0.7,
        highlights=("Renew late books online to stop the daily cost.",),
    )
    alone = extractive_answer("What do late books cost a day?", [fines, events], threshold=0.5)
    assert [c.document_id for c in alone.citations] == ["d-fines"] and "Story time" not in alone.text
    both = extractive_answer("What do late books cost a day?", [fines, renew], threshold=0.5)
    assert [c.document_id for c in both.citations] == ["d-fines", "d-renew"]


def test_a_passage_without_highlights_is_quoted_without_navigation_or_markdown() -> None:
    # A retriever that chose no sentences (not the knowledge service): the page text as it came.
    page = Passage(
        "lib:6", "d-delivery", "Delivery", "https://library.example/delivery", "Delivery",
        "Home / Help / Delivery\n## Delivery times\n**Local** delivery of reserved books costs `£3` a parcel.\n"
        "| Zone | Price |\n|---|---|\n| **Local** | £3 |\nWas this article helpful? Yes | No\n首页 > 帮助 > 配送",
        0.9,
    )
    answer = extractive_answer("How much is local delivery of books?", [page], threshold=0.5, max_sentences=4)
    assert "Local delivery of reserved books costs £3 a parcel." in answer.text
    for mark in ("**", "`", "##", "|", "Home /", "helpful", "首页"):
        assert mark not in answer.text, mark
