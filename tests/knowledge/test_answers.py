"""Extractive answers choose the sentences that answer (knowledge/answers.py), on small hand-written
passages of a public library's help pages."""

import pytest

from knowledge.answers import highlight, split_sentences
from knowledge.embeddings import MultilingualUSE


@pytest.fixture(scope="module")
def use() -> MultilingualUSE:
    return MultilingualUSE()


def best(use: MultilingualUSE, question: str, chunk: str, *, n: int = 1) -> tuple[str, ...]:
    return highlight(question, use.embed([question])[0], [chunk], use, max_sentences=n)[0].sentences


def test_how_much_picks_the_price_and_how_long_the_duration(use: MultilingualUSE) -> None:
    chunk = (
        "Gift wrapping is available for every order.\n"
        "We wrap each book in recycled paper with a ribbon and a card.\n"
        "Gift wrapping costs £3 per parcel.\n"
        "Wrapped parcels leave the warehouse one day later than the others."
    )
    assert best(use, "how much is gift wrapping?", chunk) == ("Gift wrapping costs £3 per parcel.",)
    loans = (
        "You can return a borrowed book at any branch of the library.\n"
        "Books can be borrowed for 21 days and films for 7 days.\n"
        "Late returns are charged 20p a day, up to £5 per item."
    )
    assert best(use, "how long can I keep a borrowed book?", loans) == (
        "Books can be borrowed for 21 days and films for 7 days.",
    )


def test_chinese_questions_ask_for_yuan_and_days(use: MultilingualUSE) -> None:
    chunk = "会员卡可以在任意分馆免费办理。\n图书借阅期限为 30 天，可以在 App 里续借一次。\n逾期归还每本每天收取 0.5 元。"  # noqa: E501
    assert best(use, "书能借多久", chunk) == ("图书借阅期限为 30 天，可以在 App 里续借一次。",)
    assert best(use, "逾期一天罚多少钱", chunk) == ("逾期归还每本每天收取 0.5 元。",)


def test_how_much_cheaper_is_answered_by_the_discount(use: MultilingualUSE) -> None:
    chunk = (
        "| 会员 | 月费 | 年费 |\n| --- | --- | --- |\n"
        "| 普通 | 10 元/月 | 108 元/年 |\n| 高级 | 20 元/月 | 216 元/年 |\n\n"
        "年卡一次性付清，相当于打九折，中途不退差价。月卡按自然月收费。"
    )
    assert best(use, "年卡比月卡便宜多少", chunk) == ("年卡一次性付清，相当于打九折，中途不退差价。",)
    english = (
        "Membership costs £10 a month or £108 a year.\n"
        "Paying for a year at once gives 10% off the monthly price.\n"
        "Members may bring one guest per visit."
    )
    assert best(use, "how much cheaper is paying for a year?", english) == (
        "Paying for a year at once gives 10% off the monthly price.",
    )


def test_a_sentence_that_leans_back_comes_with_the_one_before(use: MultilingualUSE) -> None:
    chunk = (
        "Members can pause their membership for up to two months a year.\n"
        "It is free and your monthly price stays the same.\n"
        "Cancelling needs one month's notice in writing to the front desk."
    )
    assert best(use, "is pausing my membership free?", chunk) == (
        "Members can pause their membership for up to two months a year.",
        "It is free and your monthly price stays the same.",
    )


def test_a_list_item_comes_with_its_lead_in_and_a_lead_in_with_its_items(use: MultilingualUSE) -> None:
    chunk = (
        "Library cards are free for everyone who lives or works in the county.\n"
        "To register, bring one of the following documents to any branch:\n"
        "- a passport;\n"
        "- a driving licence;\n"
        "- a council tax bill from the last 3 months.\n"
        "Children under 12 register with a parent."
    )
    item = best(use, "can I register with my driving licence?", chunk)
    assert item[0] == "To register, bring one of the following documents to any branch:"
    assert "a driving licence;" in item and "Children under 12 register with a parent." not in item
    lead = best(use, "which documents do I bring to register?", chunk)
    assert lead[:4] == (
        "To register, bring one of the following documents to any branch:",
        "a passport;",
        "a driving licence;",
        "a council tax bill from the last 3 months.",
    )


def test_a_faq_is_answered_with_the_answer_of_the_matching_question(use: MultilingualUSE) -> None:
    chunk = (
        "Q: Can I bring my dog into the library?\n"
        "A: Only assistance dogs are allowed inside. Dog bowls are by the front door.\n"
        "Q: Is there a car park?\n"
        "A: Yes, 40 free spaces behind the building. Two electric chargers are at the entrance."
    )
    assert best(use, "where can I park my car?", chunk, n=2) == (
        "Yes, 40 free spaces behind the building.",
        "Two electric chargers are at the entrance.",
    )


def test_a_table_row_is_read_with_its_header(use: MultilingualUSE) -> None:
    chunk = (
        "Opening hours of our branches:\n\n"
        "| Branch | Opens | Closes |\n| --- | --- | --- |\n"
        "| Riverside | 09:00 | 18:00 |\n| Old Town | 10:00 | 20:00 |\n| Harbour | 08:30 | 16:00 |\n\n"
        "Every branch is closed on public holidays."
    )
    answer = best(use, "what time does the Old Town branch close?", chunk)
    assert "Branch: Old Town, Opens: 10:00, Closes: 20:00" in answer


def test_navigation_html_and_markdown_are_read_as_text() -> None:
    page = (
        "Home > Help > Library cards\n"
        "<p>Your <b>library card</b> is valid for **five years**.</p>\n"
        "Renew it at [any branch](https://library.example/branches) or in the app.\n"
        "Back to top\n"
        "Was this page helpful? Yes No\n"
        "We use cookies to improve this site. Accept all cookies\n"
        "首页 > 帮助 > 借书证"
    )
    assert split_sentences(page) == [
        "Your library card is valid for five years.",
        "Renew it at any branch or in the app.",
    ]
