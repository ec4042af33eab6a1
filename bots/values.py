"""Small value types shared by the pipeline, the policy, summaries and copilot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Citation", "Role", "Turn"]

Role = Literal["user", "bot", "agent", "system"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One prior message of the conversation. ``agent`` turns are the human agent's, so after a
    handback the bot sees the human's outcome in its context."""

    role: Role
    text: str
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "text": self.text}
        if self.name is not None:
            out["name"] = self.name
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Turn:
        role = data.get("role", "user")
        if role not in ("user", "bot", "agent", "system"):
            role = "user"
        return cls(role=role, text=str(data.get("text", "")), name=data.get("name"))


@dataclass(frozen=True, slots=True)
class Citation:
    """The protocol's citation shape: ``{document_id, title, source, chunk_id}``."""

    document_id: str
    title: str
    source: str
    chunk_id: str

    def to_dict(self) -> dict[str, str]:
        return {
            "document_id": self.document_id,
            "title": self.title,
            "source": self.source,
            "chunk_id": self.chunk_id,
        }
