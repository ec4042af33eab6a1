"""Extractive answers choose the sentences that answer (knowledge/answers.py), on small hand-written
passages of a public library's help pages."""

import pytest

from knowledge.answers import drop_navigation, highlight, split_sentences
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
    # The same as one paragraph: the price still comes without the sentences around it.
    paragraph = chunk.replace("\n", " ") + "\n\nGift cards are sent by email within an hour."
    assert best(use, "how much is gift wrapping?", paragraph) == ("Gift wrapping costs £3 per parcel.",)
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
    # Some exports write the header row without the "|---|" rule under it: the header is the
    # first row, with fewer figures than the rows under it.
    plans = (
        "| Plan | Average download | Monthly price (18-month contract) |\n"
        "| Fibre 150 | 150 Mb/s | £28 |\n| Fibre 500 | 500 Mb/s | £35 |\n\n"
        "Fibre 500 needs the newer hub, which we send at no charge."
    )
    assert best(use, "how much is fibre 500 a month?", plans)[0] == (
        "Plan: Fibre 500, Average download: 500 Mb/s, Monthly price (18-month contract): £35"
    )


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


@pytest.mark.parametrize(
    ("question", "chunk", "fact", "other"),
    [
        # Neither sentence alone answers: the first names the review, the second says how long;
        # the other paragraph has a duration of something else.
        (
            "how long does a complaint review take?",
            "If you are not happy with our first answer, ask for your complaint to be reviewed by the "
            "resolution team. A manager who was not involved before looks at it again and replies "
            "within 10 working days.\n\n"
            "If we have not solved your complaint after 8 weeks, you can take it to the ombudsman.",
            "10 working days",
            "8 weeks",
        ),
        # A short sentence that says "yes" goes on with its paragraph, which says how.
        (
            "can I use my own router instead of yours, what settings?",
            "You can use your own router on fibre. Set it to obtain an address automatically (DHCP) on "
            "the WAN port; no username is needed.\n\n"
            "Our hub has Wi-Fi 6 and four network ports.\n\n"
            "Restart the hub from the app if the light turns red.",
            "DHCP",
            "Wi-Fi 6",
        ),
    ],
)
def test_the_fact_in_the_next_sentence_of_the_paragraph_comes_with_it(
    use: MultilingualUSE, question: str, chunk: str, fact: str, other: str
) -> None:
    answer = best(use, question, chunk)
    assert any(fact in s for s in answer)
    assert not any(other in s for s in answer)


def test_a_list_item_counts_the_words_of_its_lead_in(use: MultilingualUSE) -> None:
    chunk = (
        "Tracker: a hidden GPS module. After two years its connection costs £3 a month.\n\n"
        "Theft cover, for bikes bought in the last 3 months:\n"
        "- Costs £9 a month for bikes up to £2,000.\n"
        "- The excess is £100 per claim."
    )
    answer = best(use, "how much is theft cover a month?", chunk)
    assert "Costs £9 a month for bikes up to £2,000." in answer
    assert not any("£3" in s for s in answer)


def test_a_chinese_question_picks_the_chinese_sentence_with_the_fact(use: MultilingualUSE) -> None:
    # The question's frame and particles ("大概要多久能好", "的", "了") say what it asks, not what it
    # is about; the duration of the transfer answers it, not the 48 hours of the code.
    chunk = (
        "携号转网需要先发送短信获取授权码，授权码有效期为 48 小时。\n"
        "提交申请后，号码一般在 24 小时内完成转网，期间可能有短暂的停机。\n"
        "转网成功后，原号码的套餐会自动取消。"
    )
    answer = best(use, "我的号码转网大概要多久能好了", chunk)
    assert answer == ("提交申请后，号码一般在 24 小时内完成转网，期间可能有短暂的停机。",)


def test_a_table_header_of_short_words_is_not_taken_for_a_menu() -> None:
    # Chunking drops navigation lines: a header row like "| Plan | Data | Price |" looks like a
    # menu "Home | Shop | Help" but has rows under it, and the rows need it.
    page = (
        "Home | Shop | Help | Contact\n\n"
        "| 套餐 | 通用流量 | 月费 |\n|---|---|---|\n| 轻享 39 | 30GB | 39 元 |\n\n"
        "Prices include VAT.\n\nAbout | Careers | Press | Sitemap"
    )
    kept = drop_navigation(page)
    assert "| 套餐 | 通用流量 | 月费 |" in kept and "|---|---|---|" in kept
    assert "Home | Shop" not in kept and "Careers" not in kept
    assert split_sentences(kept) == ["套餐: 轻享 39, 通用流量: 30GB, 月费: 39 元", "Prices include VAT."]


def test_no_answer_carries_a_breadcrumb_or_raw_markdown(use: MultilingualUSE) -> None:
    chunk = (
        "Home / Help / Delivery\n\n"
        "## Delivery times\n\n"
        "Orders placed before **2 pm** leave the _same day_. See [our courier](https://x.example) "
        "for tracking.\n\n"
        "| Zone | Price |\n|---|---|\n| **Local** | `£3` |\n\n"
        "> Parcels over 20 kg go by freight.\n\n"
        "Was this article helpful? Yes | No"
    )
    for question in ("when do orders leave?", "how much is local delivery?", "how are heavy parcels sent?"):
        answer = highlight(question, use.embed([question])[0], [chunk], use, max_sentences=3)[0].sentences
        assert answer
        marks = ("**", "](", "`", "##", "> ", "Home /", "helpful", "|")
        for sentence in answer:
            assert not any(mark in sentence for mark in marks), sentence


def test_an_address_or_number_question_picks_the_sentence_with_it(use: MultilingualUSE) -> None:
    chunk = (
        "The hub settings page shows the Wi-Fi name and password, the devices connected to the hub "
        "with their address, the firmware version and the light colours, and lets you change the "
        "Wi-Fi name, the password and the channel.\n"
        "Type 192.168.1.1 into a browser on a device connected to it.\n\n"
        "Service problems in your area: text STATUS to 6060 for a free reply with the latest news. "
        "We also post planned work on our status page a week ahead."
    )
    assert any("192.168.1.1" in s for s in best(use, "what's the ip address of the hub settings page", chunk))
    assert any("6060" in s for s in best(use, "what number do i text for service problems in my area", chunk))
