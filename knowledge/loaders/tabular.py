"""Question/answer pairs from CSV or JSON."""

import csv
import io
import json
from collections.abc import Iterable, Mapping

from knowledge.documents import QA, ParsedDocument
from knowledge.errors import DocumentTooLarge, ParseFailed
from knowledge.loaders.text import clean_text
from knowledge.settings import KnowledgeSettings

__all__ = ["load_faq_csv", "load_faq_json", "load_faq_pairs"]

_QUESTION_NAMES = ("question", "q", "问题", "frage")
_ANSWER_NAMES = ("answer", "a", "答案", "回答", "antwort")


def load_faq_pairs(
    pairs: Iterable[Mapping[str, object]], *, title: str, source: str, settings: KnowledgeSettings
) -> ParsedDocument:
    faq: list[QA] = []
    for index, pair in enumerate(pairs):
        if len(faq) >= settings.max_csv_rows:
            raise DocumentTooLarge(f"more than {settings.max_csv_rows} question/answer pairs")
        if not isinstance(pair, Mapping):
            raise ParseFailed(f"FAQ entry {index} is not an object with question and answer")
        question, answer = pair.get("question"), pair.get("answer")
        if not isinstance(question, str) or not isinstance(answer, str):
            raise ParseFailed(f"FAQ entry {index} needs string 'question' and 'answer'")
        q, a = clean_text(question), clean_text(answer)
        if q and a:
            faq.append(QA(q, a))
    return ParsedDocument(title=title, source=source, faq=faq)


def load_faq_json(text: str, *, title: str, source: str, settings: KnowledgeSettings) -> ParsedDocument:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ParseFailed(f"the JSON could not be read: {exc}") from exc
    if isinstance(value, dict) and isinstance(value.get("faq"), list):
        value = value["faq"]
    if not isinstance(value, list):
        raise ParseFailed("FAQ JSON must be a list of {question, answer} objects")
    return load_faq_pairs(value, title=title, source=source, settings=settings)


def load_faq_csv(text: str, *, title: str, source: str, settings: KnowledgeSettings) -> ParsedDocument:
    """Columns named question/answer when there is a header row, else the first two."""
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:4096], ",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = csv.reader(io.StringIO(text), dialect)
    pairs: list[dict[str, object]] = []
    q_col, a_col = 0, 1
    try:
        for number, row in enumerate(rows):
            if number == 0:
                lowered = [cell.strip().lower() for cell in row]
                q_hits = [i for i, c in enumerate(lowered) if c in _QUESTION_NAMES]
                a_hits = [i for i, c in enumerate(lowered) if c in _ANSWER_NAMES]
                if q_hits and a_hits:
                    q_col, a_col = q_hits[0], a_hits[0]
                    continue
            if len(pairs) > settings.max_csv_rows:
                break
            if len(row) > max(q_col, a_col):
                pairs.append({"question": row[q_col], "answer": row[a_col]})
    except csv.Error as exc:
        raise ParseFailed(f"the CSV could not be read: {exc}") from exc
    if not pairs:
        raise ParseFailed("the CSV holds no question/answer rows")
    return load_faq_pairs(pairs, title=title, source=source, settings=settings)
