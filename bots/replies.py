"""Fixed bot texts (English and Chinese): offers, abstentions and handoff notices."""

from __future__ import annotations

from bots.handoff import HandoffDecision

__all__ = ["abstain_offer", "decline_ack", "handoff_notice", "offer_text"]


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
