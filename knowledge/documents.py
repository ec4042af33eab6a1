"""The parsed form every source is reduced to before chunking."""

import hashlib
from dataclasses import dataclass, field

__all__ = ["QA", "ParsedDocument", "Section"]


@dataclass(frozen=True, slots=True)
class Section:
    heading_path: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True)
class QA:
    question: str
    answer: str


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    title: str
    source: str
    sections: list[Section] = field(default_factory=list)
    faq: list[QA] = field(default_factory=list)

    def content_hash(self) -> str:
        """A digest of what gets indexed, so a re-upload of the same content is recognised.

        The title and source are left out on purpose: the same page uploaded as a file and
        fetched from its URL is the same content.
        """
        digest = hashlib.sha256()
        for section in self.sections:
            digest.update(" > ".join(section.heading_path).encode())
            digest.update(b"\x1f")
            digest.update(" ".join(section.text.split()).encode())
            digest.update(b"\x1e")
        for qa in self.faq:
            digest.update(b"Q\x1f" + " ".join(qa.question.split()).encode())
            digest.update(b"A\x1f" + " ".join(qa.answer.split()).encode() + b"\x1e")
        return digest.hexdigest()

    def char_count(self) -> int:
        return sum(len(s.text) for s in self.sections) + sum(len(q.question) + len(q.answer) for q in self.faq)

    def is_empty(self) -> bool:
        return not any(s.text.strip() for s in self.sections) and not self.faq
