"""Errors in one place (server/errors.py): every error class of server, bots and knowledge has a
documented code and a non-500 status, and a knowledge error from a route or a bots error from a
frame handler reaches the client with its code, not as ``internal``."""

import asyncio
import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bots
import knowledge
import server
from bots.errors import BotError, CircuitOpenError, ConfigError, LLMTimeout
from knowledge.errors import EmbeddingFailed, KnowledgeBaseNotFound, KnowledgeError
from server.errors import CODES, FOREIGN_CODES, ParleyError, as_parley, close_code_for, status_for_code
from tests.support.inproc import InProcServer, make_settings
from tests.support.ws import WsClient

ROOT = Path(__file__).resolve().parents[2]

# PROTOCOL.md "Error codes" (copied, so that a code invented in server/errors.py fails here),
# and the REST-only 415 answer.
DOCUMENTED = {"auth_required", "auth_timeout", "token_invalid", "token_expired", "forbidden", "not_found",
              "bad_frame", "unknown_type", "validation_failed", "empty_message", "too_long",
              "idempotency_key_reused", "invalid_cursor", "resync_required", "rate_limited",
              "connection_limit", "slow_consumer", "unavailable", "internal", "unsupported_media_type",
              "not_rateable",  # README "CSAT"
              # added by docs/protocol.md (edits and deletes of messages; desk operations)
              "edit_window_closed", "message_deleted", "at_capacity"}
DOCUMENTED_STATUSES = {400, 401, 403, 404, 409, 413, 415, 422, 429, 503}


def _all_modules() -> Iterator[str]:
    for pkg in (server, bots, knowledge):
        for info in pkgutil.walk_packages(pkg.__path__, f"{pkg.__name__}."):
            if ".migrations." in info.name or info.name.endswith("__main__"):
                continue
            yield info.name


def _subclasses(base: type) -> set[type]:
    found: set[type] = set()
    todo = [base]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.split(".")[0] in ("server", "bots", "knowledge") and sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


for _name in _all_modules():
    importlib.import_module(_name)

PARLEY_CLASSES = sorted(_subclasses(ParleyError), key=lambda c: c.__qualname__)
FOREIGN_CLASSES = sorted({KnowledgeError, BotError} | _subclasses(KnowledgeError) | _subclasses(BotError),
                         key=lambda c: c.__qualname__)


def test_the_walk_finds_the_trees() -> None:
    names = {c.__name__ for c in PARLEY_CLASSES + FOREIGN_CLASSES}
    assert {"AuthError", "TooLong", "Unavailable", "DecompressionBomb", "LLMContextTooLong",
            "CircuitOpenError"} <= names


def test_the_code_table_holds_documented_codes_only() -> None:
    assert set(CODES) - {"shutdown"} == DOCUMENTED
    for code, entry in CODES.items():
        if code != "internal":
            assert entry.status in DOCUMENTED_STATUSES, code
        assert entry.close == 1000 or 1001 <= entry.close <= 1015 or 4000 <= entry.close <= 4999, code


@pytest.mark.parametrize("cls", PARLEY_CLASSES, ids=lambda c: c.__qualname__)
def test_every_parley_error_class_has_a_documented_code_and_a_client_status(cls: type[ParleyError]) -> None:
    exc = cls("x")
    assert exc.code in DOCUMENTED and exc.code != "internal"
    assert exc.status == status_for_code(exc.code) in DOCUMENTED_STATUSES


@pytest.mark.parametrize("cls", FOREIGN_CLASSES, ids=lambda c: c.__qualname__)
def test_every_knowledge_and_bots_error_class_is_mapped_explicitly(cls: type[Exception]) -> None:
    assert cls in FOREIGN_CODES, f"{cls.__module__}.{cls.__qualname__} has no entry in server.errors.FOREIGN_CODES"
    code = FOREIGN_CODES[cls]
    assert code in DOCUMENTED and code != "internal"
    err = as_parley(cls("some detail"))
    assert err.code == code
    assert err.status in DOCUMENTED_STATUSES
    if issubclass(cls, KnowledgeError) and cls.code != "internal":
        # knowledge names its own protocol code: the table must not contradict it
        assert code == cls.code


def test_code_literals_in_server_are_documented() -> None:
    """Every ``code="..."`` a server module raises or sends is a row of the table."""
    used: set[str] = set()
    for path in (ROOT / "server").rglob("*.py"):
        used |= set(re.findall(r"\bcode=\"([a-z_]+)\"", path.read_text()))
    assert used, "the pattern finds nothing: it is out of date"
    assert used - set(CODES) == set()


def test_translation_keeps_parley_errors_and_hides_provider_text() -> None:
    mine = ParleyError("busy", code="rate_limited", retry_after_ms=1200)
    assert as_parley(mine) is mine
    err = as_parley(LLMTimeout("upstream https://llm.internal:8443 timed out with key sk-123"))
    assert (err.code, err.status) == ("unavailable", 503)
    assert "sk-123" not in err.detail and "llm.internal" not in err.detail
    assert as_parley(ConfigError("threshold must be 0..1")).detail == "threshold must be 0..1"
    unknown = as_parley(ValueError("secret internals"))
    assert (unknown.code, unknown.status, unknown.detail) == ("internal", 500, "internal error")
    assert close_code_for("unavailable") == 1013
    assert close_code_for("not a code") == 1008


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcServer]:
    server = InProcServer(make_settings(tmp_path_factory.mktemp("errors"))).start()
    yield server
    server.stop()


@pytest.mark.parametrize(("exc", "status", "code"), [
    (EmbeddingFailed("the embedding model is not loaded"), 503, "unavailable"),
    (KnowledgeBaseNotFound("knowledge base kb1 does not exist"), 404, "not_found"),
])
def test_a_knowledge_error_from_a_route_reaches_the_client_with_its_code(
        srv: InProcServer, monkeypatch: pytest.MonkeyPatch, exc: KnowledgeError, status: int, code: str) -> None:
    def failing_search(*_a: Any, **_kw: Any) -> Any:
        raise exc

    with srv.admin() as c:
        kb = c.post("/v1/knowledge-bases", json={"name": "Help"}).json()["id"]
        monkeypatch.setattr(srv.app.state.knowledge, "search", failing_search)
        r = c.get(f"/v1/knowledge-bases/{kb}/search", params={"q": "refund"})
    assert r.status_code == status, r.text
    assert r.json()["error"] == {"code": code, "detail": exc.detail}


async def test_a_bots_error_from_a_frame_handler_reaches_the_client_with_its_code(
        srv: InProcServer, monkeypatch: pytest.MonkeyPatch) -> None:
    async def breaker_open(*_a: Any, **_kw: Any) -> Any:
        raise CircuitOpenError("provider breaker open for 30 s")

    token = await asyncio.to_thread(srv.token, "err-user")
    client = await WsClient.connect(srv.ws_url, token)
    try:
        cid = await client.start()
        monkeypatch.setattr(srv.app.state.chat, "apply", breaker_open)
        await client.send({"type": "handoff.request", "conversation_id": cid, "ref": "h1"})
        err = await client.expect("error", ref="h1")
        assert (err["code"], err["fatal"]) == ("unavailable", False), err
        # the session goes on
        await client.send({"type": "ping", "ref": "p1"})
        await client.expect("pong", ref="p1")
    finally:
        await client.close()
