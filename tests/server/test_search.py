"""Agents' search over the tenant's conversations and messages (``GET /v1/search``), through the real
server on SQLite (FTS5) and PostgreSQL (full-text): words and prefixes, Chinese substrings, the status
and label filters, the query's own syntax inert, edits and deletions followed by the index, limits with
clear errors, and nobody reading another tenant's messages."""

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, update

from server.accounts.tenants import create_tenant
from server.core.models import Message
from tests.conftest import create_pg_database, drop_pg_database
from tests.support.http import err
from tests.support.inproc import FAST, InProcServer, make_settings


@dataclass
class World:
    srv: InProcServer
    admin: str
    agent: str
    alice: str
    other_admin: str
    refund_conv: str  # Alice's: a refund, in English and Chinese
    password_conv: str  # Bob's: a password reset
    other_conv: str  # the other tenant's: also a refund

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.srv.url, headers={"Authorization": f"Bearer {token}"}, timeout=20)


def _say(c: httpx.Client, cid: str, text: str) -> dict[str, Any]:
    r = c.post(f"/v1/conversations/{cid}/messages", json={"client_msg_id": str(uuid.uuid4()), "text": text})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _conversation(c: httpx.Client) -> str:
    return str(c.post("/v1/conversations", json={}).json()["conversation"]["id"])


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def w(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    url = asyncio.run(create_pg_database()) if request.param == "postgres" else None
    data: Path = tmp_path_factory.mktemp(f"search-{request.param}")
    srv = InProcServer(make_settings(data, url, search_max_results=20, **FAST)).start().without_bot()
    try:
        other = srv.call(create_tenant(srv.app.state.db, "Other Inc"))
        _agent_id, agent = srv.agent("Dana", f"dana-{uuid.uuid4().hex[:6]}@x.io")
        alice = srv.token(f"alice-{uuid.uuid4().hex[:6]}", name="Alice")
        bob = srv.token(f"bob-{uuid.uuid4().hex[:6]}", name="Bob")
        with httpx.Client(base_url=srv.url, timeout=10, headers={"Authorization": f"Bearer {other.admin_key}"}) as ob:
            carol = ob.post("/v1/tokens", json={"sub": "carol", "role": "user"}).json()["token"]
        w = World(srv, srv.admin_key, agent, alice, other.admin_key, "", "", "")
        with w.client(alice) as c:
            w.refund_conv = _conversation(c)
            _say(c, w.refund_conv, "My refund for order 1234 has not arrived yet")
            _say(c, w.refund_conv, "退款还没到账，请帮我查一下")
        with w.client(bob) as c:
            w.password_conv = _conversation(c)
            _say(c, w.password_conv, "How do I reset my password? The e-mail never came")
        with w.client(carol) as c:
            w.other_conv = _conversation(c)
            _say(c, w.other_conv, "refund please, order 1234, 退款")
        yield w
    finally:
        srv.stop()
        if url:
            asyncio.run(drop_pg_database(url))


def search(w: World, token: str, **params: Any) -> httpx.Response:
    with w.client(token) as c:
        return c.get("/v1/search", params=params)


def hits(w: World, token: str | None = None, **params: Any) -> list[tuple[str, str]]:
    r = search(w, token or w.agent, **params)
    assert r.status_code == 200, r.text
    return [(x["conversation_id"], x["text"]) for x in r.json()["results"]]


def test_words_and_a_prefix_find_the_message_in_its_tenant_only(w: World) -> None:
    found = hits(w, q="refund")
    assert found == [(w.refund_conv, "My refund for order 1234 has not arrived yet")]
    assert hits(w, q="REFUN") == found  # case folded, the last word a prefix
    assert hits(w, q="order refund") == found  # every word, in any order
    assert hits(w, q="refund password") == []  # every word must occur
    assert [c for c, _ in hits(w, q="password")] == [w.password_conv]
    assert [c for c, _ in hits(w, q="mail")] == [w.password_conv]  # "e-mail" holds the word "mail"


def test_chinese_matches_as_a_substring(w: World) -> None:
    assert hits(w, q="退款") == [(w.refund_conv, "退款还没到账，请帮我查一下")]
    assert hits(w, q="到账 查一下") == [(w.refund_conv, "退款还没到账，请帮我查一下")]
    assert hits(w, q="退货") == []


def test_admins_search_too_and_results_come_newest_first(w: World) -> None:
    found = hits(w, w.admin, q="1234 order")
    assert found == [(w.refund_conv, "My refund for order 1234 has not arrived yet")]
    assert [t for _, t in hits(w, w.admin, q="refund")] == ["My refund for order 1234 has not arrived yet"]
    with w.client(w.alice) as c:
        _say(c, w.refund_conv, "any news on the refund?")
    assert [t for _, t in hits(w, q="refund")] == ["any news on the refund?",
                                                   "My refund for order 1234 has not arrived yet"]
    assert [t for _, t in hits(w, q="refund", limit=1)] == ["any news on the refund?"]


def test_status_and_label_narrow_the_results(w: World) -> None:
    status = search(w, w.agent, q="refund").json()["results"][0]["status"]
    assert status != "resolved"
    assert hits(w, q="refund", status="resolved") == []
    assert {c for c, _ in hits(w, q="refund", status=status)} == {w.refund_conv}
    with w.client(w.admin) as c:
        label = c.post("/v1/labels", json={"name": f"billing-{uuid.uuid4().hex[:4]}"}).json()["id"]
    with w.client(w.agent) as c:
        assert c.put(f"/v1/conversations/{w.refund_conv}/labels/{label}").status_code == 200
    assert {c for c, _ in hits(w, q="refund", label=label)} == {w.refund_conv}
    assert hits(w, q="password", label=label) == []
    # another tenant's label is missing, like one that never existed
    with w.client(w.other_admin) as c:
        foreign = c.post("/v1/labels", json={"name": "theirs"}).json()["id"]
    assert err(search(w, w.agent, q="refund", label=foreign))[:2] == (404, "not_found")


@pytest.mark.parametrize("q", ['refund"', "(refund", "refund:*", "refund' --", "refund NOT", "{refund}",
                               "refund*", "^refund", "refund)", "refund -order", "refund | order",
                               "refund & !order", "order:refund"])
def test_the_engines_query_syntax_is_inert(w: World, q: str) -> None:
    """Quotes, operators and column filters of FTS5 or tsquery are plain characters: the words still
    match (every word must occur: "NOT" is the word "not"), nothing errs."""
    found = [t for c, t in hits(w, q=q) if c == w.refund_conv]
    assert "My refund for order 1234 has not arrived yet" in found


@pytest.mark.parametrize("q", ["%", "_", '"', "   ", "--"])
def test_a_query_without_words_is_refused(w: World, q: str) -> None:
    assert err(search(w, w.agent, q=q)) == (422, "validation_failed", "q")


def test_limits_are_settings_with_clear_errors(w: World) -> None:
    assert err(search(w, w.agent, q="a" * 201)) == (422, "validation_failed", "q")
    assert err(search(w, w.agent, q=" ".join(f"w{i}" for i in range(9)))) == (422, "validation_failed", "q")
    assert err(search(w, w.agent, q="refund", limit=0)) == (422, "validation_failed", "limit")
    assert err(search(w, w.agent, q="refund", limit=21)) == (422, "validation_failed", "limit")
    assert err(search(w, w.agent, q="refund", status="nonsense")) == (422, "validation_failed", "status")
    assert search(w, w.agent).status_code in (400, 422)  # no q at all


def test_end_users_and_strangers_cannot_search(w: World) -> None:
    assert err(search(w, w.alice, q="refund"))[:2] == (403, "forbidden")
    with httpx.Client(base_url=w.srv.url, timeout=10) as c:
        assert c.get("/v1/search", params={"q": "refund"}).status_code == 401
    # the other tenant's admin finds its own refund, never this tenant's
    # (its bot may have answered Carol too: every hit is in Carol's conversation)
    assert {c for c, _ in hits(w, w.other_admin, q="refund")} == {w.other_conv}
    assert {c for c, _ in hits(w, w.other_admin, q="退款")} == {w.other_conv}


def test_the_index_follows_edits_and_deletions(w: World) -> None:
    """Whatever path changes a message's text (an edit, an erasure), the index follows it."""
    with w.client(w.alice) as c:
        cid = _conversation(c)
        posted = _say(c, cid, "the toaster sparks when plugged in")

    async def edit(text: str) -> None:
        async with w.srv.app.state.db.session() as s:
            await s.exec(update(Message).where(Message.id == posted["message_id"]).values(text=text))  # type: ignore[call-overload]
            await s.commit()

    assert [c for c, _ in hits(w, q="toaster")] == [cid]
    w.srv.call(edit("the kettle sparks when plugged in"))
    assert hits(w, q="toaster") == []
    assert hits(w, q="kettle") == [(cid, "the kettle sparks when plugged in")]

    async def erase() -> None:
        async with w.srv.app.state.db.session() as s:
            await s.exec(delete(Message).where(Message.id == posted["message_id"]))  # type: ignore[call-overload]
            await s.commit()

    w.srv.call(erase())
    assert hits(w, q="kettle") == []
