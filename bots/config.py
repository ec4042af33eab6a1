"""Bot configuration values. Plain frozen dataclasses built by the server's composition root
(nothing here reads the environment); ``from_dict``/``to_dict`` round-trip the JSON of
``POST /v1/bots`` so the server can store them as-is."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bots.errors import ConfigError

__all__ = ["BotConfig", "BusinessHours", "HandoffSettings", "LLMConfig", "Window"]

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True, slots=True)
class LLMConfig:
    """An OpenAI-compatible endpoint. The server passes ``None`` instead of an LLMConfig when no
    model is configured, which selects grounded extractive mode."""

    base_url: str
    api_key: str
    model: str
    # The SDK defaults (10 min, 2 retries) would leave a user waiting: keep both explicit.
    timeout_s: float = 20.0
    max_retries: int = 1
    temperature: float | None = 0.2
    #: A small model can ramble until the deadline hands the user off: cap the answer.
    max_tokens: int = 512

    def __post_init__(self) -> None:
        if not self.base_url or not self.model:
            raise ConfigError("base_url and model are required")
        if self.timeout_s <= 0 or self.max_retries < 0 or self.max_tokens < 1:
            raise ConfigError("timeout_s must be > 0, max_retries >= 0 and max_tokens >= 1")

    def __repr__(self) -> str:  # never print the key
        return f"LLMConfig(base_url={self.base_url!r}, model={self.model!r}, api_key='***')"


@dataclass(frozen=True, slots=True)
class Window:
    """Opening hours on some weekdays (0 = Monday), ``start``/``end`` as ``HH:MM`` local time."""

    days: Sequence[int]
    start: str
    end: str

    def __post_init__(self) -> None:
        if not all(0 <= d <= 6 for d in self.days):
            raise ConfigError("weekdays are 0 (Monday) to 6 (Sunday)")
        if not _HHMM.match(self.start) or not _HHMM.match(self.end):
            raise ConfigError("times are HH:MM")

    def contains(self, local: datetime) -> bool:
        if local.weekday() not in self.days:
            return False
        t = local.time()
        return time.fromisoformat(self.start) <= t < time.fromisoformat(self.end)


@dataclass(frozen=True, slots=True)
class BusinessHours:
    tz: str
    windows: Sequence[Window]

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"unknown timezone {self.tz!r}") from exc

    def is_open(self, now: datetime) -> bool:
        if now.tzinfo is None:
            raise ConfigError("business hours need an aware datetime")
        local = now.astimezone(ZoneInfo(self.tz))
        return any(w.contains(local) for w in self.windows)


@dataclass(frozen=True, slots=True)
class HandoffSettings:
    """Tenant knobs of the handoff policy (see ``bots.handoff``)."""

    human_only_topics: Sequence[str] = ()
    #: e.g. ``{"plan": ("enterprise",)}``: a user whose attribute matches goes to a human.
    vip_attributes: Mapping[str, Sequence[str]] = field(default_factory=dict)
    business_hours: BusinessHours | None = None
    #: Without evidence, offer a human first (True) or hand off at once (False).
    offer_before_handoff: bool = True
    #: Frustration points (see ``bots.handoff``) at which the bot hands off.
    frustration_threshold: int = 2
    #: The same question this many times (current included) hands off.
    repeat_threshold: int = 3
    #: "That didn't help" this many times (current included) hands off.
    didnt_help_threshold: int = 2
    #: Best retrieval score below which there is no evidence.
    score_threshold: float = 0.35
    #: The tenant's own phrases per always-handoff rule: ``{"safety": ["gas smell"], "legal": [...]}``;
    #: another key names a rule of the tenant's own (reason code ``rule:<name>``). Phrases, not regexes.
    rule_phrases: Mapping[str, Sequence[str]] = field(default_factory=dict)
    #: Probability from the learned turn classifier at or above which the bot hands off (> 1 turns
    #: the learned layer off). Chosen by cross-validation across businesses (train on the others,
    #: score the one left out: ``python -m bots.handoff_training --leave-one-out``); in a conversation
    #: that already shows trouble the policy uses half of it (``bots.handoff.CONTEXT_THRESHOLD_FACTOR``).
    learned_threshold: float = 0.8

    def __post_init__(self) -> None:
        if self.frustration_threshold < 1 or self.repeat_threshold < 2 or self.didnt_help_threshold < 1:
            raise ConfigError("thresholds out of range")
        if not self.learned_threshold >= 0.0:  # NaN fails too
            raise ConfigError("learned_threshold must be >= 0")
        if sum(len(v) for v in self.rule_phrases.values()) > 500 or any(
            len(p) > 200 for v in self.rule_phrases.values() for p in v
        ):
            raise ConfigError("at most 500 rule phrases of at most 200 characters")

    def to_dict(self) -> dict[str, Any]:
        bh = self.business_hours
        return {
            "human_only_topics": list(self.human_only_topics),
            "vip_attributes": {k: list(v) for k, v in self.vip_attributes.items()},
            "business_hours": None
            if bh is None
            else {
                "tz": bh.tz,
                "windows": [{"days": list(w.days), "start": w.start, "end": w.end} for w in bh.windows],
            },
            "offer_before_handoff": self.offer_before_handoff,
            "frustration_threshold": self.frustration_threshold,
            "repeat_threshold": self.repeat_threshold,
            "didnt_help_threshold": self.didnt_help_threshold,
            "score_threshold": self.score_threshold,
            "rule_phrases": {k: list(v) for k, v in self.rule_phrases.items()},
            "learned_threshold": self.learned_threshold,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> HandoffSettings:
        if not data:
            return cls()
        try:
            bh_raw = data.get("business_hours")
            bh = (
                None
                if not bh_raw
                else BusinessHours(
                    tz=str(bh_raw["tz"]),
                    windows=tuple(
                        Window(days=tuple(int(d) for d in w["days"]), start=w["start"], end=w["end"])
                        for w in bh_raw.get("windows", [])
                    ),
                )
            )
            defaults = cls()
            return cls(
                human_only_topics=tuple(str(t) for t in data.get("human_only_topics", ())),
                vip_attributes={
                    str(k): tuple(str(x) for x in v) for k, v in dict(data.get("vip_attributes", {})).items()
                },
                business_hours=bh,
                offer_before_handoff=bool(data.get("offer_before_handoff", defaults.offer_before_handoff)),
                frustration_threshold=int(data.get("frustration_threshold", defaults.frustration_threshold)),
                repeat_threshold=int(data.get("repeat_threshold", defaults.repeat_threshold)),
                didnt_help_threshold=int(data.get("didnt_help_threshold", defaults.didnt_help_threshold)),
                score_threshold=float(data.get("score_threshold", defaults.score_threshold)),
                rule_phrases={
                    str(k): tuple(str(x) for x in v if str(x).strip())
                    for k, v in dict(data.get("rule_phrases") or {}).items()
                },
                learned_threshold=float(data.get("learned_threshold", defaults.learned_threshold)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid handoff settings: {exc}") from exc


@dataclass(frozen=True, slots=True)
class BotConfig:
    name: str
    knowledge_base_id: str
    persona: str = ""
    handoff: HandoffSettings = field(default_factory=HandoffSettings)
    #: Passages retrieved per answer.
    top_k: int = 4
    #: Overall deadline of one answer (retrieval + generation); past it the bot hands off.
    answer_deadline_s: float = 15.0

    def __post_init__(self) -> None:
        if not self.name or not self.knowledge_base_id:
            raise ConfigError("name and knowledge_base_id are required")
        if self.top_k < 1 or self.answer_deadline_s <= 0:
            raise ConfigError("top_k must be >= 1 and answer_deadline_s > 0")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "knowledge_base_id": self.knowledge_base_id,
            "persona": self.persona,
            "handoff": self.handoff.to_dict(),
            "top_k": self.top_k,
            "answer_deadline_s": self.answer_deadline_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BotConfig:
        try:
            return cls(
                name=str(data["name"]),
                knowledge_base_id=str(data["knowledge_base_id"]),
                persona=str(data.get("persona") or ""),
                handoff=HandoffSettings.from_dict(data.get("handoff")),
                top_k=int(data.get("top_k", 4)),
                answer_deadline_s=float(data.get("answer_deadline_s", 15.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid bot config: {exc}") from exc
