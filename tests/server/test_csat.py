"""CSAT through the real server on SQLite and PostgreSQL: the end user rates a conversation once a human
resolved it or the AI answered in it, the rating keeps who resolved it, rating again replaces it, the
admin's figures split AI from human, the tenant sets its own wording; bad input and other people get
clear errors and nothing is stored."""

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import select

from server.accounts.tenants import create_tenant
from server.desk.models import Rating
from tests.conftest import create_pg_database, drop_pg_database
from tests.support.http import err
from tests.support.inproc import FAST, InProcServer, make_settings


@dataclass
class World:
    srv: InProcServer
    admin: str
    dana: str  # an agent
    dana_id: str
    other_admin: str

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.srv.url, headers=headers, timeout=20)

    def user(self, name: str = "Ada") -> str:
        return self.srv.token(f"{name.lower()}-{uuid.uuid4().hex[:6]}", name=name)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def w(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    url = asyncio.run(create_pg_database()) if request.param == "postgres" else None
    data: Path = tmp_path_factory.mktemp(f"csat-{request.param}")
    srv = InProcServer(make_settings(data, url, csat_comment_max_chars=50, **FAST)).start()
    try:
        other = srv.call(create_tenant(srv.app.state.db, "Other Inc"))
        dana_id, dana = srv.agent("Dana", f"dana-{uuid.uuid4().hex[:6]}@x.io")
        yield World(srv, srv.admin_key, dana, dana_id, other.admin_key)
    finally:
        srv.stop()
        if url:
            asyncio.run(drop_pg_database(url))


def rate(w: World, token: str, cid: str, score: Any, comment: Any = None) -> httpx.Response:
    body: dict[str, Any] = {"score": score}
    if comment is not None:
        body["comment"] = comment
    with w.client(token) as c:
        return c.put(f"/v1/conversations/{cid}/rating", json=body)


def ratings(w: World) -> int:
    async def count() -> int:
        async with w.srv.app.state.db.session() as s:
            return int((await s.exec(select(func.count()).select_from(Rating))).one())
    return int(w.srv.call(count()))


def start(w: World, token: str, text: str) -> str:
    with w.client(token) as c:
        r = c.post("/v1/conversations", json={"text": text})
        assert r.status_code == 201, r.text
        return str(r.json()["conversation"]["id"])


def wait_for_bot_answer(w: World, token: str, cid: str) -> None:
    deadline = time.monotonic() + 20
    with w.client(token) as c:
        while time.monotonic() < deadline:
            msgs = c.get(f"/v1/conversations/{cid}/messages").json()["messages"]
            if any(m["sender"]["kind"] == "bot" for m in msgs):
                return
            time.sleep(0.1)
    raise AssertionError("the AI agent never answered")


def resolved_by_dana(w: World, user: str, text: str) -> str:
    cid = start(w, user, text)
    with w.client(user) as c:
        assert c.post(f"/v1/conversations/{cid}/handoff").status_code == 200
    with w.client(w.dana) as c:
        assert c.post(f"/v1/conversations/{cid}/claim").status_code == 200
        r = c.post(f"/v1/conversations/{cid}/messages", json={"client_msg_id": str(uuid.uuid4()), "text": "Fixed it."})
        assert r.status_code == 201, r.text
        assert c.post(f"/v1/conversations/{cid}/resolve").status_code == 200
    return cid


def test_a_human_resolution_is_rated_once_and_rating_again_replaces_it(w: World) -> None:
    ada = w.user("Ada")
    cid = start(w, ada, "hello")
    with w.client(ada) as c:
        assert c.post(f"/v1/conversations/{cid}/handoff").status_code == 200
    before = ratings(w)
    # waiting for a person: nothing to rate yet
    assert err(rate(w, ada, cid, 5))[:2] == (409, "not_rateable")
    with w.client(w.dana) as c:
        assert c.post(f"/v1/conversations/{cid}/claim").status_code == 200
        assert c.post(f"/v1/conversations/{cid}/resolve").status_code == 200
    r = rate(w, ada, cid, 5, "  quick and kind  ")
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["score"], got["comment"], got["resolver_kind"], got["resolver_id"]) == (5, "quick and kind", "human",
                                                                                        w.dana_id)
    r = rate(w, ada, cid, 2)
    assert (r.status_code, r.json()["score"], r.json()["comment"]) == (200, 2, None)
    assert ratings(w) == before + 1
    # the agent sees it in the console; the visitor reads their own
    for token in (w.dana, ada, w.admin):
        with w.client(token) as c:
            assert c.get(f"/v1/conversations/{cid}/rating").json()["score"] == 2


def test_the_ai_and_then_a_person_are_rated_apart_in_one_conversation(w: World) -> None:
    bo = w.user("Bo")
    cid = start(w, bo, "what are your opening hours")
    wait_for_bot_answer(w, bo, cid)
    before = ratings(w)
    r = rate(w, bo, cid, 2, "not helpful")
    assert (r.status_code, r.json()["resolver_kind"]) == (200, "ai"), r.text
    with w.client(bo) as c:
        assert c.post(f"/v1/conversations/{cid}/handoff").status_code == 200
    assert err(rate(w, bo, cid, 5))[:2] == (409, "not_rateable")  # waiting for a person
    with w.client(w.dana) as c:
        assert c.post(f"/v1/conversations/{cid}/claim").status_code == 200
        assert c.post(f"/v1/conversations/{cid}/resolve").status_code == 200
    r = rate(w, bo, cid, 5, "Dana sorted it")
    assert (r.status_code, r.json()["resolver_kind"], r.json()["resolver_id"]) == (200, "human", w.dana_id)
    assert ratings(w) == before + 2
    with w.client(w.dana) as c:  # the console shows the latest
        assert c.get(f"/v1/conversations/{cid}/rating").json()["comment"] == "Dana sorted it"


def test_bad_ratings_are_refused_and_nothing_is_stored(w: World) -> None:
    cy = w.user("Cy")
    cid = resolved_by_dana(w, cy, "my invoice is wrong")
    before = ratings(w)
    for score in (0, 6, -1, 100):
        assert err(rate(w, cy, cid, score)) == (422, "validation_failed", "score")
    assert err(rate(w, cy, cid, 3, "x" * 51)) == (422, "validation_failed", "comment")
    for bad in ("five", None, 4.5):
        assert rate(w, cy, cid, bad).status_code in (400, 422)
    with w.client(cy) as c:
        assert c.put(f"/v1/conversations/{cid}/rating", json={"score": 3, "extra": 1}).status_code in (400, 422)
    assert ratings(w) == before


def test_only_the_conversations_end_user_rates_it(w: World) -> None:
    cy = w.user("Cy")
    cid = resolved_by_dana(w, cy, "my parcel is late")
    before = ratings(w)
    stranger = w.user("Eve")
    assert err(rate(w, stranger, cid, 1))[:2] == (404, "not_found")
    assert err(rate(w, w.dana, cid, 5))[:2] == (403, "forbidden")
    assert err(rate(w, w.admin, cid, 5))[:2] == (403, "forbidden")
    assert err(rate(w, w.other_admin, cid, 5))[:2] == (403, "forbidden")
    with w.client(w.other_admin) as c:
        carol = c.post("/v1/tokens", json={"sub": "carol", "role": "user"}).json()["token"]
        # another tenant's conversation is missing, like one that never existed
        assert err(c.get(f"/v1/conversations/{cid}/rating"))[:2] == (404, "not_found")
    assert err(rate(w, carol, cid, 1))[:2] == (404, "not_found")
    assert err(rate(w, cy, "0" * 32, 1))[:2] == (404, "not_found")
    with w.client(stranger) as c:
        assert err(c.get(f"/v1/conversations/{cid}/rating"))[:2] == (404, "not_found")
    with w.client(None) as c:
        assert c.put(f"/v1/conversations/{cid}/rating", json={"score": 5}).status_code == 401
    assert ratings(w) == before


def test_the_admin_figures_split_ai_from_human(w: World) -> None:
    with w.client(w.admin) as c:
        base = c.get("/v1/admin/csat").json()
    for score in (5, 4, 1):
        u = w.user("Hu")
        assert rate(w, u, resolved_by_dana(w, u, "help"), score).status_code == 200
    u = w.user("Ai")
    cid = start(w, u, "do you ship abroad")
    wait_for_bot_answer(w, u, cid)
    assert rate(w, u, cid, 5, "the bot nailed it").status_code == 200
    with w.client(w.admin) as c:
        got = c.get("/v1/admin/csat", params={"days": 7}).json()
        assert err(c.get("/v1/admin/csat", params={"days": 0}))[:2] == (422, "validation_failed")
    assert got["human"]["ratings"] - base["human"]["ratings"] == 3
    assert got["ai"]["ratings"] - base["ai"]["ratings"] == 1
    for kind in ("human", "ai"):
        f = got[kind]
        assert sum(f["distribution"].values()) == f["ratings"]
        mean = sum(int(k) * v for k, v in f["distribution"].items()) / f["ratings"]
        assert f["average"] == round(mean, 2)
        assert f["satisfied"] == round((f["distribution"]["4"] + f["distribution"]["5"]) / f["ratings"], 3)
    dana = next(a for a in got["by_agent"] if a["agent_id"] == w.dana_id)
    assert (dana["name"], dana["ratings"]) == ("Dana", got["human"]["ratings"])
    assert got["recent"][0]["comment"] == "the bot nailed it"
    # agents and end users do not see the figures; another tenant sees only its own (none)
    for token in (w.dana, u):
        with w.client(token) as c:
            assert c.get("/v1/admin/csat").status_code == 403
    with w.client(w.other_admin) as c:
        theirs = c.get("/v1/admin/csat").json()
    assert (theirs["human"]["ratings"], theirs["ai"]["ratings"], theirs["recent"]) == (0, 0, [])


def test_a_tenant_sets_its_own_wording(w: World) -> None:
    ada = w.user("Ada")
    with w.client(ada) as c:
        assert c.get("/v1/csat/wording").json() == {"question": "How would you rate this conversation?",
                                                    "thanks": "Thank you for your feedback!"}
        assert c.put("/v1/csat/wording", json={"question": "Rate us"}).status_code == 403
    with w.client(w.admin) as c:
        r = c.put("/v1/csat/wording", json={"question": "您对本次服务满意吗？", "thanks": "谢谢！"})
        assert r.status_code == 200, r.text
        assert c.put("/v1/csat/wording", json={"question": "x" * 301}).status_code in (400, 422)
    with w.client(ada) as c:
        assert c.get("/v1/csat/wording").json() == {"question": "您对本次服务满意吗？", "thanks": "谢谢！"}
    with w.client(w.other_admin) as c:  # the other tenant keeps the server's wording
        assert c.get("/v1/csat/wording").json()["question"] == "How would you rate this conversation?"
    with w.client(w.admin) as c:  # blank goes back to the server's
        assert c.put("/v1/csat/wording", json={"question": " ", "thanks": None}).json()["thanks"] == \
            "Thank you for your feedback!"
