"""The desk through the real server (uvicorn on loopback), on SQLite and PostgreSQL: canned
responses (the tenant's managed by admins, an agent's own, the variables filled by plain
substitution and anything else refused), labels on conversations and the ``label=`` filter, and
who may do what (end users nothing; another tenant's objects look missing)."""

import asyncio
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
from server.desk.models import CannedResponse
from tests.conftest import create_pg_database, drop_pg_database
from tests.support.http import err
from tests.support.inproc import FAST, InProcServer, make_settings


@dataclass
class World:
    srv: InProcServer
    admin: str
    alice: str  # an end user named Alice
    dana: str  # an agent
    dana_id: str
    eli: str  # another agent
    other_admin: str  # another tenant's admin
    other_agent: str
    conv: str  # Alice's conversation
    other_conv: str  # a conversation of the other tenant

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.srv.url, headers={"Authorization": f"Bearer {token}"}, timeout=20)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def w(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    url = asyncio.run(create_pg_database()) if request.param == "postgres" else None
    data: Path = tmp_path_factory.mktemp(f"desk-{request.param}")
    srv = InProcServer(make_settings(data, url, max_canned_responses_per_owner=5, canned_response_max_chars=300,
                                     **FAST)).start().without_bot()
    try:
        other = srv.call(create_tenant(srv.app.state.db, "Other Inc"))
        dana_id, dana = srv.agent("Dana", f"dana-{uuid.uuid4().hex[:6]}@x.io")
        _eli_id, eli = srv.agent("Eli", f"eli-{uuid.uuid4().hex[:6]}@x.io")
        with httpx.Client(base_url=srv.url, timeout=10, headers={"Authorization": f"Bearer {other.admin_key}"}) as ob:
            r = ob.post("/v1/agents", json={"name": "Olga", "email": "olga@x.io", "password": "correct horse battery"})
            olga = ob.post("/v1/tokens", json={"sub": r.json()["id"], "role": "agent"}).json()["token"]
            carol = ob.post("/v1/tokens", json={"sub": "carol", "role": "user"}).json()["token"]
        alice = srv.token(f"alice-{uuid.uuid4().hex[:6]}", name="Alice")
        w = World(srv, srv.admin_key, alice, dana, dana_id, eli, other.admin_key, olga, "", "")
        with w.client(alice) as c:
            w.conv = c.post("/v1/conversations", json={}).json()["conversation"]["id"]
        with w.client(carol) as c:
            w.other_conv = c.post("/v1/conversations", json={}).json()["conversation"]["id"]
        yield w
    finally:
        srv.stop()
        if url:
            asyncio.run(drop_pg_database(url))


def make(w: World, token: str, shortcut: str, text: str, title: str = "Greeting") -> dict[str, Any]:
    with w.client(token) as c:
        r = c.post("/v1/canned-responses", json={"title": title, "shortcut": shortcut, "text": text})
    assert r.status_code == 201, r.text
    return dict(r.json())


def shortcuts(w: World, token: str) -> set[str]:
    with w.client(token) as c:
        r = c.get("/v1/canned-responses")
    assert r.status_code == 200, r.text
    return {x["shortcut"] for x in r.json()["canned_responses"]}


def canned_rows(w: World) -> int:
    async def count() -> int:
        async with w.srv.app.state.db.session() as s:
            return int((await s.exec(select(func.count()).select_from(CannedResponse))).one())
    return int(w.srv.call(count()))


def test_an_agent_sees_the_tenants_responses_and_their_own_and_renders_them(w: World) -> None:
    tag = uuid.uuid4().hex[:6]
    shared = make(w, w.admin, f"/hello-{tag}", "Hi {{user.name}}, I am {{ agent.name }} (ref {{conversation.id}}).")
    own = make(w, w.dana, f"thanks-{tag}", "Thanks, {{user.name}}!")
    assert shared["scope"] == "tenant" and shared["shortcut"] == f"hello-{tag}"  # the leading "/" is not stored
    assert own["scope"] == "agent" and own["agent_id"] == w.dana_id

    assert {f"hello-{tag}", f"thanks-{tag}"} <= shortcuts(w, w.dana)
    assert f"hello-{tag}" in shortcuts(w, w.eli) and f"thanks-{tag}" not in shortcuts(w, w.eli)
    assert f"hello-{tag}" in shortcuts(w, w.admin) and f"thanks-{tag}" not in shortcuts(w, w.admin)

    with w.client(w.dana) as c:
        r = c.get(f"/v1/canned-responses/{shared['id']}/render", params={"conversation_id": w.conv})
        assert r.status_code == 200, r.text
        assert r.json()["text"] == f"Hi Alice, I am Dana (ref {w.conv})."
        assert c.get(f"/v1/canned-responses/{own['id']}/render",
                     params={"conversation_id": w.conv}).json()["text"] == "Thanks, Alice!"
        # another tenant's conversation looks missing
        assert err(c.get(f"/v1/canned-responses/{shared['id']}/render",
                         params={"conversation_id": w.other_conv}))[:2] == (404, "not_found")
    with w.client(w.eli) as c:  # another agent's own response looks missing
        assert err(c.get(f"/v1/canned-responses/{own['id']}/render",
                         params={"conversation_id": w.conv}))[:2] == (404, "not_found")


@pytest.mark.parametrize("text", ["{{ ''.__class__ }}", "{{ ''.__class__.__mro__[1].__subclasses__() }}",
                                  "{{user.__dict__}}", "{{ config }}", "hi {{user.name}} {{7*7}}"])
def test_a_template_reaching_for_anything_but_the_variables_is_refused_and_not_stored(w: World, text: str) -> None:
    before = canned_rows(w)
    with w.client(w.dana) as c:
        r = c.post("/v1/canned-responses", json={"title": "x", "shortcut": f"t{uuid.uuid4().hex[:6]}", "text": text})
    assert err(r) == (422, "validation_failed", "text")
    assert "unknown variable" in r.json()["error"]["detail"]
    assert canned_rows(w) == before


def test_the_text_is_substituted_never_evaluated(w: World) -> None:
    """Braces that are not a placeholder, and a user name that itself looks like one, stay text."""
    mallory = w.srv.token(f"mallory-{uuid.uuid4().hex[:6]}", name="{{ ''.__class__ }}")
    with w.client(mallory) as c:
        conv = c.post("/v1/conversations", json={}).json()["conversation"]["id"]
    row = make(w, w.dana, f"b{uuid.uuid4().hex[:6]}", "{ not } {{user.name}} {{agent.name}}")
    with w.client(w.dana) as c:
        r = c.get(f"/v1/canned-responses/{row['id']}/render", params={"conversation_id": conv})
    assert r.status_code == 200, r.text
    assert r.json()["text"] == "{ not } {{ ''.__class__ }} Dana"


def test_who_may_manage_canned_responses(w: World) -> None:
    shared = make(w, w.admin, f"s{uuid.uuid4().hex[:6]}", "Shared")
    own = make(w, w.dana, f"o{uuid.uuid4().hex[:6]}", "Own")
    with w.client(w.alice) as c:  # end users: nothing
        assert err(c.get("/v1/canned-responses"))[:2] == (403, "forbidden")
        assert err(c.post("/v1/canned-responses", json={"title": "a", "shortcut": "a", "text": "a"}))[:2] == \
            (403, "forbidden")
        assert err(c.delete(f"/v1/canned-responses/{shared['id']}"))[:2] == (403, "forbidden")
    with w.client(w.dana) as c:  # an agent reads the tenant's but cannot change them
        assert c.get(f"/v1/canned-responses/{shared['id']}").status_code == 200
        assert err(c.patch(f"/v1/canned-responses/{shared['id']}", json={"text": "mine now"}))[:2] == \
            (403, "forbidden")
        assert err(c.delete(f"/v1/canned-responses/{shared['id']}"))[:2] == (403, "forbidden")
        r = c.patch(f"/v1/canned-responses/{own['id']}", json={"text": "Own, edited {{user.name}}"})
        assert r.status_code == 200 and r.json()["text"] == "Own, edited {{user.name}}"
    with w.client(w.admin) as c:  # an admin cannot see an agent's own
        assert err(c.get(f"/v1/canned-responses/{own['id']}"))[:2] == (404, "not_found")
    for token in (w.other_admin, w.other_agent):  # another tenant: missing
        with w.client(token) as c:
            assert shared["shortcut"] not in shortcuts(w, token)
            assert err(c.get(f"/v1/canned-responses/{shared['id']}"))[:2] == (404, "not_found")
            assert err(c.patch(f"/v1/canned-responses/{shared['id']}", json={"text": "x"}))[:2] == (404, "not_found")
            assert err(c.delete(f"/v1/canned-responses/{shared['id']}"))[:2] == (404, "not_found")
    with w.client(w.admin) as c:
        assert c.patch(f"/v1/canned-responses/{shared['id']}", json={"title": "Renamed"}).json()["title"] == "Renamed"
        assert c.delete(f"/v1/canned-responses/{shared['id']}").status_code == 204
        assert err(c.get(f"/v1/canned-responses/{shared['id']}"))[:2] == (404, "not_found")
    with w.client(w.dana) as c:
        assert c.delete(f"/v1/canned-responses/{own['id']}").status_code == 204


def test_bad_canned_responses_are_refused_with_the_field(w: World) -> None:
    taken = make(w, w.eli, f"dup{uuid.uuid4().hex[:6]}", "first")
    before = canned_rows(w)
    with w.client(w.eli) as c:
        cases = [({"title": "x", "shortcut": taken["shortcut"], "text": "again"}, "shortcut"),
                 ({"title": "x", "shortcut": "has space", "text": "t"}, "shortcut"),
                 ({"title": "x", "shortcut": "ok", "text": "x" * 301}, "text"),
                 ({"title": "  ", "shortcut": "ok", "text": "t"}, "title"),
                 ({"title": "x", "shortcut": "ok", "text": "   "}, "text")]
        for body, field in cases:
            assert err(c.post("/v1/canned-responses", json=body)) == (422, "validation_failed", field), body
        r = c.post("/v1/canned-responses", json={"title": "x", "shortcut": "ok", "text": "t", "extra": 1})
        assert r.status_code == 422
        # the same shortcut is free for another owner (the tenant's list shadows nothing)
        assert c.get("/v1/canned-responses").status_code == 200
    assert canned_rows(w) == before
    assert make(w, w.dana, taken["shortcut"], "Dana's own")["shortcut"] == taken["shortcut"]


def test_each_owner_has_at_most_the_configured_number(w: World) -> None:
    _id, fresh = w.srv.agent("Fay", f"fay-{uuid.uuid4().hex[:6]}@x.io")
    for i in range(5):
        make(w, fresh, f"n{i}", "t")
    with w.client(fresh) as c:
        assert err(c.post("/v1/canned-responses", json={"title": "x", "shortcut": "n9", "text": "t"}))[:2] == \
            (422, "validation_failed")


def test_labels_on_conversations_and_the_label_filter(w: World) -> None:
    name = f"billing-{uuid.uuid4().hex[:6]}"
    with w.client(w.admin) as c:
        r = c.post("/v1/labels", json={"name": name, "colour": "#FF8800"})
        assert r.status_code == 201, r.text
        label = r.json()
        assert label["colour"] == "#ff8800"
        assert err(c.post("/v1/labels", json={"name": name, "colour": "#000000"})) == \
            (422, "validation_failed", "name")
        assert err(c.post("/v1/labels", json={"name": "x", "colour": "red"})) == (422, "validation_failed", "colour")
    with w.client(w.alice) as c:
        second = c.post("/v1/conversations", json={}).json()["conversation"]["id"]
    with w.client(w.dana) as c:
        assert name in {x["name"] for x in c.get("/v1/labels").json()["labels"]}
        assert err(c.post("/v1/labels", json={"name": "mine", "colour": "#000000"}))[:2] == (403, "forbidden")
        for _ in range(2):  # idempotent
            r = c.put(f"/v1/conversations/{w.conv}/labels/{label['id']}")
            assert r.status_code == 200, r.text
            assert [x["id"] for x in r.json()["labels"]] == [label["id"]]
        assert [x["name"] for x in c.get(f"/v1/conversations/{w.conv}/labels").json()["labels"]] == [name]
        listed = c.get("/v1/conversations", params={"label": label["id"]}).json()["conversations"]
        assert [x["id"] for x in listed] == [w.conv]
        unfiltered = {x["id"] for x in c.get("/v1/conversations").json()["conversations"]}
        assert {w.conv, second} <= unfiltered
        assert err(c.get("/v1/conversations", params={"label": "nope"})) == (422, "validation_failed", "label")
        # another tenant's conversation: missing
        assert err(c.put(f"/v1/conversations/{w.other_conv}/labels/{label['id']}"))[:2] == (404, "not_found")
    with w.client(w.other_agent) as c:  # another tenant's label: missing, and not a filter
        assert err(c.put(f"/v1/conversations/{w.other_conv}/labels/{label['id']}"))[:2] == (404, "not_found")
        assert err(c.get("/v1/conversations", params={"label": label["id"]})) == (422, "validation_failed", "label")
        assert err(c.get(f"/v1/conversations/{w.conv}/labels"))[:2] == (404, "not_found")
    with w.client(w.alice) as c:  # end users: nothing
        assert err(c.get("/v1/labels"))[:2] == (403, "forbidden")
        assert err(c.put(f"/v1/conversations/{w.conv}/labels/{label['id']}"))[:2] == (403, "forbidden")
        assert err(c.get("/v1/conversations", params={"label": label["id"]}))[:2] == (403, "forbidden")
    with w.client(w.dana) as c:
        r = c.delete(f"/v1/conversations/{w.conv}/labels/{label['id']}")
        assert r.status_code == 200 and r.json()["labels"] == []
        assert c.get("/v1/conversations", params={"label": label["id"]}).json()["conversations"] == []
        c.put(f"/v1/conversations/{second}/labels/{label['id']}").raise_for_status()
    with w.client(w.admin) as c:
        assert c.patch(f"/v1/labels/{label['id']}", json={"colour": "#112233"}).json()["colour"] == "#112233"
        assert c.delete(f"/v1/labels/{label['id']}").status_code == 204
    with w.client(w.dana) as c:  # a deleted label comes off every conversation
        assert c.get(f"/v1/conversations/{second}/labels").json()["labels"] == []
