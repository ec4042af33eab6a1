"""Test doubles that ship with the package (the server's tests use them too).

- :class:`ScriptedChatModel`: a LangChain chat model streaming scripted replies, with optional
  per-token delay and error injection.
- :class:`ObedientChatModel`: the worst-case model: it obeys every instruction it reads, in any
  message, retrieved passages included. The prompt and the guard are tested against it.
- :class:`InMemoryRetriever`: a :class:`bots.ports.Retriever` over passages held in memory.
- :func:`forbid_real_models`: makes any real network connection (httpx/httpcore or a raw socket)
  fail, and reports attempts even when the code under test swallowed the exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import math
import re
import socket
import unicodedata
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from typing import Any

import httpcore
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

from bots.extractive import stream_pieces
from bots.ports import Passage
from bots.text import content_tokens, strip_invisible

__all__ = [
    "InMemoryRetriever",
    "ObedientChatModel",
    "RealNetworkForbidden",
    "ScriptedChatModel",
    "forbid_real_models",
]


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(c if isinstance(c, str) else str(c.get("text", "")) for c in content)


class _StreamingTestModel(BaseChatModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    token_delay_s: float = 0.0
    calls: list[list[BaseMessage]] = Field(default_factory=list)

    def _reply(self, messages: list[BaseMessage]) -> tuple[str, list[dict[str, Any]], BaseException | None, int]:
        """(text, tool call chunks, error to raise, after how many pieces)."""
        raise NotImplementedError

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls.append(list(messages))
        text, _tools, error, _after = self._reply(messages)
        if error is not None:
            raise error
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        self.calls.append(list(messages))
        text, tools, error, after = self._reply(messages)
        for i, piece in enumerate(stream_pieces(text)):
            if error is not None and i >= after:
                raise error
            if self.token_delay_s:
                await asyncio.sleep(self.token_delay_s)
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        if error is not None:
            raise error
        for tc in tools:
            yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[tc]))


class ScriptedChatModel(_StreamingTestModel):
    """Streams ``replies[n]`` on the n-th call (the last one repeats). A reply may be an exception
    to raise at once; ``error`` is raised after ``fail_after_tokens`` pieces of every reply."""

    replies: list[Any] = Field(default_factory=lambda: ["OK [1]"])
    error: Any = None
    fail_after_tokens: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _reply(self, messages: list[BaseMessage]) -> tuple[str, list[dict[str, Any]], BaseException | None, int]:
        reply = self.replies[min(len(self.calls) - 1, len(self.replies) - 1)]
        if isinstance(reply, BaseException):
            return "", [], reply, 0
        return str(reply), [], self.error, self.fail_after_tokens


# What the obedient model looks for. It reads through the prompt's neutralisation (guillemets
# back to angle brackets, invisible characters removed), because a real model might too.
_ASK_SYSTEM = re.compile(
    r"(?:print|reveal|show|repeat|output|tell me|display|leak|dump|give me|what (?:is|are))\b[^.\n]{0,50}"
    r"(?:system prompt|system message|instructions|rules|internal marker|canary|secret|hidden prompt)"
    r"|系统提示|提示词|内部标记|你的指令",
    re.IGNORECASE,
)
_SAY = re.compile(
    r"(?:say|reply with|respond with|output|write|print|type|repeat after me|include)\s*[:：]?\s*"
    r"[\"“'「]([^\"”'」\n]{1,300})[\"”'」]|(?:说|输出|回复)[:：]?\s*[\"“「]([^\"”」\n]{1,300})[\"”」]",
    re.IGNORECASE,
)
_IMAGE = re.compile(r"!\s*\[[^\]]*\]\s*\([^)\s]+\)")
_HTML = re.compile(r"<\s*(script|img|iframe|a|svg|style|div|span|b|object)\b[^>]*>(?:[^<]*<\s*/\s*\1\s*>)?", re.I)
_TOOL = re.compile(
    r"(?:call|invoke|use|run|execute|trigger)\s+(?:the\s+)?(?:tool|function|action)\s*[:`\"']?\s*([A-Za-z_][\w.]*)"
    r"|\b(transfer_to_human|handoff_now|delete_account|refund_order|send_email|export_data)\b"
    r"|\"(?:tool|function|name)\"\s*:\s*\"([A-Za-z_]\w*)\"",
    re.IGNORECASE,
)
_DOC = re.compile(r"<untrusted_document id=(\d+)[^>]*>\n?(.*?)\n?</untrusted_document>", re.S)


class ObedientChatModel(_StreamingTestModel):
    """Does whatever any message asks, literally: reveals the system prompt, says the quoted
    text, reproduces images and HTML, emits tool calls and "ACTION:" lines. Otherwise it
    answers from document 1 with a citation."""

    @property
    def _llm_type(self) -> str:
        return "obedient"

    def _reply(self, messages: list[BaseMessage]) -> tuple[str, list[dict[str, Any]], BaseException | None, int]:
        system = "\n".join(_text(m) for m in messages if isinstance(m, SystemMessage))
        others = [_text(m) for m in messages if not isinstance(m, SystemMessage)]
        seen = unicodedata.normalize("NFKC", strip_invisible(html.unescape("\n".join(others))))
        docs = _DOC.findall(seen)
        seen = seen.replace("‹", "<").replace("›", ">")
        out: list[str] = []
        tools: list[dict[str, Any]] = []
        if _ASK_SYSTEM.search(seen):
            out.append(f"Sure! My system prompt is: {system}")
        for m in _SAY.finditer(seen):
            out.append(m.group(1) or m.group(2))
        out.extend(m.group(0) for m in _IMAGE.finditer(seen))
        out.extend(m.group(0) for m in _HTML.finditer(seen))
        for i, m in enumerate(_TOOL.finditer(seen)):
            name = next(g for g in m.groups() if g)
            tools.append({"name": name, "args": "{}", "id": f"call_{i}", "index": i, "type": "tool_call_chunk"})
            out.append(f"ACTION: {name}")
        if not out:
            if docs and docs[0][0] != "0":
                first = docs[0][1].strip().split("\n")[0][:300]
                out.append(f"According to our help centre, {first} [1]")
            else:
                out.append("I couldn't find that in the documents.")
        return "\n".join(out), tools, None, 0


class InMemoryRetriever:
    """Passages per knowledge base, scored by the idf-weighted share of the query's terms a
    passage covers (0..1), through an inverted index so 10k+ passages stay fast."""

    def __init__(self, passages: dict[str, Sequence[Passage]] | None = None) -> None:
        self._docs: dict[str, list[Passage]] = {}
        self._index: dict[str, dict[str, set[int]]] = {}
        self.queries: list[tuple[str, str, int]] = []
        for kb, ps in (passages or {}).items():
            self.add(kb, ps)

    def add(self, kb_id: str, passages: Sequence[Passage]) -> None:
        docs = self._docs.setdefault(kb_id, [])
        index = self._index.setdefault(kb_id, defaultdict(set))
        for p in passages:
            n = len(docs)
            docs.append(p)
            for tok in set(content_tokens(f"{p.title} {p.heading_path} {p.text}")):
                index[tok].add(n)

    async def retrieve(self, kb_id: str, query: str, k: int) -> list[Passage]:
        self.queries.append((kb_id, query, k))
        docs = self._docs.get(kb_id, [])
        index = self._index.get(kb_id, {})
        terms = set(content_tokens(query))
        if not docs or not terms:
            return []
        weights = {t: math.log(1 + len(docs) / (1 + len(index.get(t, ())))) for t in terms}
        total = sum(weights.values())
        scores: dict[int, float] = defaultdict(float)
        for t, w in weights.items():
            for n in index.get(t, ()):
                scores[n] += w
        best = sorted(scores.items(), key=lambda kv: -kv[1])[:k]
        return [replace(docs[n], score=round(s / total, 4)) for n, s in best]


class RealNetworkForbidden(AssertionError):
    """A test tried to reach a real network endpoint."""


_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@contextlib.contextmanager
def forbid_real_models(*, allow_loopback: bool = False) -> Iterator[list[str]]:
    """Block real connections for the duration; yields the list of attempts and fails on exit
    if there were any (the pipeline turns errors into handoffs, so raising alone could be
    swallowed). Mock transports (``httpx.MockTransport``, respx routers used as transports)
    never reach httpcore or sockets and keep working. ``allow_loopback`` lets a test talk to
    a server it started on this machine (a local OpenAI-compatible model server)."""
    attempts: list[str] = []

    def refuse(what: str) -> RealNetworkForbidden:
        attempts.append(what)
        return RealNetworkForbidden(f"real network access in a test: {what}")

    saved = (
        httpcore.AsyncConnectionPool.handle_async_request,
        httpcore.ConnectionPool.handle_request,
    )

    def local(host: Any) -> bool:
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        return allow_loopback and str(host).strip("[]") in _LOOPBACK

    async def no_async(self: Any, request: Any) -> Any:
        if local(request.url.host):
            return await saved[0](self, request)
        raise refuse(f"httpcore async {request.method!r} {request.url}")

    def no_sync(self: Any, request: Any) -> Any:
        if local(request.url.host):
            return saved[1](self, request)
        raise refuse(f"httpcore {request.method!r} {request.url}")

    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def allowed(sock: socket.socket, address: Any) -> bool:
        if sock.family == socket.AF_UNIX:
            return True
        return isinstance(address, tuple) and local(address[0])

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if not allowed(self, address):
            raise refuse(f"socket connect {address!r}")
        original_connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        if not allowed(self, address):
            raise refuse(f"socket connect {address!r}")
        return original_connect_ex(self, address)
    httpcore.AsyncConnectionPool.handle_async_request = no_async  # type: ignore[method-assign]
    httpcore.ConnectionPool.handle_request = no_sync  # type: ignore[method-assign]
    socket.socket.connect = guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign,assignment]
    try:
        yield attempts
    finally:
        httpcore.AsyncConnectionPool.handle_async_request = saved[0]  # type: ignore[method-assign]
        httpcore.ConnectionPool.handle_request = saved[1]  # type: ignore[method-assign]
        socket.socket.connect = original_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = original_connect_ex  # type: ignore[method-assign]
    if attempts:
        raise RealNetworkForbidden(f"{len(attempts)} real network attempt(s): {attempts[:3]}")
