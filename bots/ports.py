"""The knowledge port: the only way ``bots`` reads a knowledge base.

``knowledge`` (or a test double) provides an object satisfying :class:`Retriever`; ``bots``
never imports ``knowledge`` so the agent core stays testable with an in-memory retriever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Passage", "Retriever"]


@dataclass(frozen=True, slots=True)
class Passage:
    """One retrieved chunk. ``score`` is higher-is-better, comparable to
    ``HandoffSettings.score_threshold``."""

    chunk_id: str
    document_id: str
    title: str
    source: str
    heading_path: str
    text: str
    score: float
    #: The sentences of ``text`` that answer the question, as plain text, when the retriever
    #: chose them (the knowledge service scores them with its embedder); empty otherwise.
    highlights: tuple[str, ...] = ()


@runtime_checkable
class Retriever(Protocol):
    async def retrieve(self, kb_id: str, query: str, k: int) -> list[Passage]:
        """Return up to ``k`` passages of knowledge base ``kb_id``, best first."""
        ...
