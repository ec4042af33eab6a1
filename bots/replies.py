"""Fixed bot texts (English and Chinese): offers, abstentions and handoff notices, and the
quick-reply buttons under them (a button pressed sends its ``value`` as the user's message, which
the handoff policy reads like typed text: "Yes, connect me with a person" asks for a person,
"No thanks" declines the offer, "That helped, thanks" is thanked for without a search)."""

from __future__ import annotations

import re
from typing import NamedTuple

from bots.handoff import HandoffDecision
from bots.text import normalize

__all__ = ["Choice", "abstain_offer", "decline_ack", "feedback_choices", "handoff_notice", "is_thanks",
           "offer_choices", "offer_text", "thanks_ack"]


class Choice(NamedTuple):
    """A quick-reply button: what it shows, and what pressing it sends."""

    label: str
    value: str


def offer_choices(zh: bool) -> tuple[Choice, ...]:
    """Under the offer of a person."""
    if zh:
        return Choice("好的，转人工", "好的，请转人工"), Choice("不用了", "不用了，谢谢")
    return Choice("Yes, connect me", "Yes, connect me with a person"), Choice("No thanks", "No thanks")


def feedback_choices(zh: bool) -> tuple[Choice, ...]:
    """Under an answer from the knowledge base: "That helped" / "I still need help"."""
    if zh:
        return Choice("有帮助", "有帮助，谢谢"), Choice("还需要帮助", "我还需要帮助，请转人工")
    return (Choice("That helped", "That helped, thanks"),
            Choice("I still need help", "I still need help — connect me with a person"))


_THANKS = re.compile(
    r"^(?:that helped|that helps|it helped|thanks|thank you|thx|ty|great|perfect|got it|有帮助|谢谢|多谢|感谢)"
    r"(?:[\s,.!，。！]+(?:thanks|thank you|a lot|so much|谢谢|了))*[\s,.!，。！]*$"
)


def is_thanks(text: str) -> bool:
    """The whole message only thanks (as the "That helped" button does): nothing to look up."""
    norm = normalize(text).replace("’", "'")
    return len(norm) <= 40 and bool(_THANKS.match(norm))


def thanks_ack(zh: bool) -> str:
    return "很高兴能帮到您！还有其他问题随时问我。" if zh else "Glad that helped! Ask me anything else any time."


def abstain_offer(zh: bool) -> str:
    if zh:
        return "我在帮助中心里没有找到相关内容——需要我为您转接人工客服吗？"
    return "I couldn't find that in our help centre — would you like me to connect you with a person?"


def offer_text(zh: bool) -> str:
    return abstain_offer(zh)


def decline_ack(zh: bool) -> str:
    return "好的，还有什么可以帮您的吗？" if zh else "No problem — what else can I help you with?"


def handoff_notice(decision: HandoffDecision, zh: bool) -> str:
    """The visible notice posted when the bot hands off (never silent: QUALITY.md)."""
    fault = decision.reason_code in ("provider_error", "circuit_open", "retrieval_error")
    if zh:
        head = "抱歉，我暂时无法回答。" if fault else ""
        tail = (
            "我已为您转接人工客服，请稍候。"
            if decision.humans_available
            else "现在不是人工客服的工作时间，我已转交您的问题，客服上班后会尽快回复您。"
        )
        return head + tail
    head = "Sorry, I'm having trouble answering right now. " if fault else ""
    tail = (
        "I'm connecting you with a member of our team — they'll be with you shortly."
        if decision.humans_available
        else "Our team is offline right now; I've passed your conversation on and someone will "
        "reply as soon as they're back."
    )
    return head + tail
