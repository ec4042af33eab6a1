"""Agents and teams as the admin manages them, through a real ``parley serve`` on SQLite and
PostgreSQL: the demo agent's login (printed once, stored privately, working at /v1/auth/login),
listing and editing agents, teams and their members, who may do it (admins of the tenant only;
another tenant's objects look missing), and the stored capacity deciding assignment."""

import asyncio
import os
import re
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.accounts.tenants import DEMO_AGENT_EMAIL, DEMO_AGENT_FILE, ensure_demo_tenant
from server.cli import banner_lines
from server.core.db import Database
from server.core.settings import Settings
from server.migrations import upgrade
from tests.conftest import create_pg_database, drop_pg_database
from tests.support.inproc import FAST_ENV
from tests.support.live import ROOT, LiveServer, free_port
from tests.support.ws import WsClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:server")

PASSWORD = "tall ladder purple"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def node(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    url = asyncio.run(create_pg_database()) if request.param == "postgres" else None
    data = tmp_path_factory.mktemp(f"desk-{request.param}")
    srv = LiveServer("uvicorn", free_port(), data, {**FAST_ENV, **({"PARLEY_DATABASE_URL": url} if url else {})})
    try:
        srv.start(timeout=90)
        yield srv
    finally:
        srv.stop()
        if url is not None:
            asyncio.run(drop_pg_database(url))


def new_tenant(srv: LiveServer, name: str) -> str:
    """A second tenant in the server's database (``parley tenant create``); returns its admin key."""
    env = {**os.environ, **srv.env, "PARLEY_DATA_DIR": str(srv.data_dir)}
    out = subprocess.run([sys.executable, "-m", "server.cli", "tenant", "create", name], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    match = re.search(r"admin key:\s+(\S+)", out)
    assert match, out
    return match.group(1)


def client(srv: LiveServer, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=srv.url, headers=headers, timeout=15)


def create_agent(c: httpx.Client, name: str, **extra: Any) -> dict[str, Any]:
    r = c.post("/v1/agents", json={"name": name, "email": f"{name.lower()}-{uuid.uuid4().hex[:6]}@x.io",
                                   "password": PASSWORD, **extra})
    assert r.status_code == 201, r.text
    return dict(r.json())


def login(srv: LiveServer, email: str, password: str) -> httpx.Response:
    with client(srv, None) as c:
        return c.post("/v1/auth/login", json={"email": email, "password": password})


def error(r: httpx.Response) -> tuple[int, str, str | None]:
    err = r.json()["error"]
    return r.status_code, err["code"], err.get("field")


# -- the demo agent -------------------------------------------------------------------------

def test_the_demo_agent_login_is_printed_once_and_works_in_the_console(node: LiveServer) -> None:
    file = node.data_dir / DEMO_AGENT_FILE
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    fields = dict(line.split(": ", 1) for line in file.read_text().splitlines())
    assert fields["email"] == DEMO_AGENT_EMAIL
    password = fields["password"]
    assert len(password) >= 16
    assert f"Demo agent login at {node.url}/agent: {DEMO_AGENT_EMAIL} / {password}" in node.log()

    r = login(node, DEMO_AGENT_EMAIL, password)
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    with client(node, token) as c:
        assert c.get("/v1/conversations").status_code == 200
    assert login(node, DEMO_AGENT_EMAIL, password + "x").status_code == 401
    with node.admin() as c:
        demo = [a for a in c.get("/v1/agents").json()["agents"] if a["email"] == DEMO_AGENT_EMAIL]
    assert len(demo) == 1
    assert demo[0]["active"] is True
    assert demo[0]["id"] == r.json()["agent_id"]


async def test_each_demo_tenant_gets_its_own_generated_password(tmp_path: Path) -> None:
    passwords = []
    for i in range(2):
        data = tmp_path / str(i)
        db = Database(f"sqlite+aiosqlite:///{data / 'parley.db'}")
        await upgrade(db)
        created = await ensure_demo_tenant(db, data)
        assert created is not None
        assert created.demo_agent is not None
        assert await ensure_demo_tenant(db, data) is None  # only on the first start
        await db.dispose()
        passwords.append(created.demo_agent.password)
        assert created.demo_agent.password in (data / DEMO_AGENT_FILE).read_text()
    assert passwords[0] != passwords[1]


def test_later_starts_point_at_the_file_and_never_print_the_password(tmp_path: Path) -> None:
    (tmp_path / DEMO_AGENT_FILE).write_text(f"email: {DEMO_AGENT_EMAIL}\npassword: secret-secret-1\n")
    (tmp_path / "demo-admin-key.txt").write_text("pk_admin\n")
    lines = banner_lines(Settings(data_dir=tmp_path, port=8123), None)
    text = "\n".join(lines)
    assert f"Demo agent login at http://127.0.0.1:8123/agent: in {tmp_path / DEMO_AGENT_FILE}" in text
    assert "secret-secret-1" not in text
    assert "pk_admin" not in text


# -- agents ---------------------------------------------------------------------------------

def test_list_edit_deactivate_and_reset_an_agent(node: LiveServer) -> None:
    with node.admin() as c:
        agent = create_agent(c, "Erin")
        listed = {a["id"]: a for a in c.get("/v1/agents").json()["agents"]}
        mine = listed[agent["id"]]
        assert (mine["name"], mine["active"], mine["online"], mine["max_concurrent"]) == ("Erin", True, False, 5)
        assert (mine["open_conversations"], mine["team_ids"]) == (0, [])

        r = c.patch(f"/v1/agents/{agent['id']}", json={"name": "Erin Vale", "max_concurrent": 2})
        assert r.status_code == 200, r.text
        assert (r.json()["name"], r.json()["max_concurrent"]) == ("Erin Vale", 2)
        assert c.get(f"/v1/agents/{agent['id']}").json()["max_concurrent"] == 2
        for bad in ({"max_concurrent": 0}, {"max_concurrent": 101}, {"name": ""}, {"name": "   "},
                    {"email": "other@x.io"}):
            r = c.patch(f"/v1/agents/{agent['id']}", json=bad)
            assert r.status_code in (400, 422), (bad, r.text)
        assert c.get(f"/v1/agents/{agent['id']}").json()["name"] == "Erin Vale"  # nothing stored

        assert login(node, agent["email"], PASSWORD).status_code == 200
        assert c.post(f"/v1/agents/{agent['id']}/deactivate").json()["active"] is False
        assert c.get(f"/v1/agents/{agent['id']}").json()["active"] is False
        assert login(node, agent["email"], PASSWORD).status_code == 401
        assert c.post(f"/v1/agents/{agent['id']}/activate").json()["active"] is True

        weak = c.post(f"/v1/agents/{agent['id']}/password", json={"password": "short"})
        assert error(weak) == (422, "validation_failed", "password")
        assert c.post(f"/v1/agents/{agent['id']}/password", json={"password": "quiet river lantern"}).status_code == 200
    assert login(node, agent["email"], PASSWORD).status_code == 401
    assert login(node, agent["email"], "quiet river lantern").status_code == 200


# -- teams ----------------------------------------------------------------------------------

def test_teams_and_their_members(node: LiveServer) -> None:
    with node.admin() as c:
        a1, a2 = create_agent(c, "Finn"), create_agent(c, "Gail")
        name = f"Billing {uuid.uuid4().hex[:4]}"
        r = c.post("/v1/teams", json={"name": name})
        assert r.status_code == 201, r.text
        team = r.json()
        assert (team["name"], team["agent_ids"]) == (name, [])
        assert error(c.post("/v1/teams", json={"name": name})) == (422, "validation_failed", "name")
        assert error(c.post("/v1/teams", json={"name": "   "}))[:2] == (422, "validation_failed")
        assert c.post("/v1/teams", json={"name": "x" * 201}).status_code in (400, 422)
        assert c.post("/v1/teams", json={"name": "Ok", "extra": 1}).status_code in (400, 422)

        tid = team["id"]
        assert c.put(f"/v1/teams/{tid}/agents/{a1['id']}").json()["agent_ids"] == [a1["id"]]
        assert c.put(f"/v1/teams/{tid}/agents/{a1['id']}").json()["agent_ids"] == [a1["id"]]  # idempotent
        assert c.put(f"/v1/teams/{tid}/agents/{a2['id']}").json()["agent_ids"] == [a1["id"], a2["id"]]
        assert error(c.put(f"/v1/teams/{tid}/agents/{'0' * 32}"))[:2] == (404, "not_found")
        agents = {a["id"]: a for a in c.get("/v1/agents").json()["agents"]}
        assert agents[a1["id"]]["team_ids"] == [tid]

        renamed = c.patch(f"/v1/teams/{tid}", json={"name": name + " EU"})
        assert renamed.status_code == 200
        assert renamed.json()["name"] == name + " EU"
        assert [t["name"] for t in c.get("/v1/teams").json()["teams"] if t["id"] == tid] == [name + " EU"]

        assert c.delete(f"/v1/teams/{tid}/agents/{a1['id']}").json()["agent_ids"] == [a2["id"]]
        assert error(c.delete(f"/v1/teams/{tid}/agents/{a1['id']}"))[:2] == (404, "not_found")

        assert c.delete(f"/v1/teams/{tid}").status_code == 204
        assert error(c.get(f"/v1/teams/{tid}"))[:2] == (404, "not_found")
        assert error(c.delete(f"/v1/teams/{tid}"))[:2] == (404, "not_found")
        agents = {a["id"]: a for a in c.get("/v1/agents").json()["agents"]}
        assert agents[a2["id"]]["team_ids"] == []  # the memberships went with the team
        assert agents[a2["id"]]["active"] is True  # the agents stayed
        # the name is free again
        assert c.post("/v1/teams", json={"name": name}).status_code == 201


# -- who may do it --------------------------------------------------------------------------

def _routes(agent_id: str, team_id: str) -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/v1/agents", None),
        ("GET", f"/v1/agents/{agent_id}", None),
        ("PATCH", f"/v1/agents/{agent_id}", {"max_concurrent": 9}),
        ("POST", f"/v1/agents/{agent_id}/password", {"password": "hostile takeover 1"}),
        ("POST", f"/v1/agents/{agent_id}/deactivate", None),
        ("POST", f"/v1/agents/{agent_id}/activate", None),
        ("GET", "/v1/teams", None),
        ("POST", "/v1/teams", {"name": "Hijack"}),
        ("GET", f"/v1/teams/{team_id}", None),
        ("PATCH", f"/v1/teams/{team_id}", {"name": "Hijacked"}),
        ("PUT", f"/v1/teams/{team_id}/agents/{agent_id}", None),
        ("DELETE", f"/v1/teams/{team_id}/agents/{agent_id}", None),
        ("DELETE", f"/v1/teams/{team_id}", None),
    ]


def test_only_the_tenants_admin_manages_agents_and_teams(node: LiveServer) -> None:
    with node.admin() as c:
        agent = create_agent(c, "Hana")
        team = c.post("/v1/teams", json={"name": f"Sales {uuid.uuid4().hex[:4]}"}).json()
        c.put(f"/v1/teams/{team['id']}/agents/{agent['id']}").raise_for_status()
    agent_token = login(node, agent["email"], PASSWORD).json()["token"]
    user_token = node.token(f"user-{uuid.uuid4().hex[:6]}")
    other_key = new_tenant(node, "Other Inc")
    for who, token, expected in (("agent", agent_token, (403, "forbidden")), ("user", user_token, (403, "forbidden")),
                                 ("anonymous", None, (401, "auth_required"))):
        with client(node, token) as c:
            for method, path, body in _routes(agent["id"], team["id"]):
                r = c.request(method, path, json=body)
                assert error(r)[:2] == expected, (who, method, path, r.text)

    with client(node, other_key) as c:
        assert c.get("/v1/agents").json()["agents"] == []
        assert c.get("/v1/teams").json()["teams"] == []
        for method, path, body in _routes(agent["id"], team["id"]):
            if path in ("/v1/agents", "/v1/teams"):
                continue
            r = c.request(method, path, json=body)
            missing = c.request(method, path.replace(agent["id"], "0" * 32).replace(team["id"], "1" * 32),
                                json=body)
            assert error(r)[:2] == (404, "not_found"), (method, path, r.text)
            assert error(r)[:2] == error(missing)[:2]
        # its own team cannot take in an agent of another tenant
        own = c.post("/v1/teams", json={"name": "B team"}).json()
        assert error(c.put(f"/v1/teams/{own['id']}/agents/{agent['id']}"))[:2] == (404, "not_found")
        assert c.get(f"/v1/teams/{own['id']}").json()["agent_ids"] == []

    with node.admin() as c:  # nothing changed
        after = c.get(f"/v1/agents/{agent['id']}").json()
        assert (after["active"], after["max_concurrent"], after["team_ids"]) == (True, 5, [team["id"]])
        assert c.get(f"/v1/teams/{team['id']}").json()["name"] == team["name"]
    assert login(node, agent["email"], PASSWORD).status_code == 200


# -- capacity decides assignment ------------------------------------------------------------

async def test_assignment_respects_the_stored_capacity(node: LiveServer) -> None:
    key = new_tenant(node, f"Capacity {uuid.uuid4().hex[:4]}")
    with client(node, key) as c:
        agent = create_agent(c, "Ivy", max_concurrent=5)
        assert c.patch(f"/v1/agents/{agent['id']}", json={"max_concurrent": 1}).status_code == 200

        def user_token(sub: str) -> str:
            r = c.post("/v1/tokens", json={"sub": sub, "role": "user"})
            r.raise_for_status()
            return str(r.json()["token"])

        users = [user_token(f"cap-{i}") for i in range(3)]
    token = login(node, agent["email"], PASSWORD).json()["token"]
    ws = await WsClient.connect(node.ws_url, token)  # online
    try:
        async with httpx.AsyncClient(base_url=node.url, timeout=15) as http:
            async def handoff(user: str) -> dict[str, Any]:
                h = {"Authorization": f"Bearer {user}"}
                conv = (await http.post("/v1/conversations", json={}, headers=h)).json()["conversation"]
                r = await http.post(f"/v1/conversations/{conv['id']}/handoff", headers=h)
                assert r.status_code == 200, r.text
                return dict(r.json()["conversation"])

            first = await handoff(users[0])
            assert (first["status"], first["assignee"]) == ("assigned", agent["id"])
            second = await handoff(users[1])
            assert second["status"] == "queued"  # capacity 1 is full

            with client(node, key) as c:
                listed = c.get(f"/v1/agents/{agent['id']}").json()
                assert (listed["online"], listed["open_conversations"]) == (True, 1)
                # more room: the waiting conversation goes to the agent at once
                assert c.patch(f"/v1/agents/{agent['id']}", json={"max_concurrent": 2}).status_code == 200
                assert c.get(f"/v1/agents/{agent['id']}").json()["open_conversations"] == 2
                h = {"Authorization": f"Bearer {users[1]}"}
                mine = (await http.get("/v1/conversations", headers=h)).json()["conversations"]
                assert [(m["status"], m["assignee"]) for m in mine] == [("assigned", agent["id"])]
                third = await handoff(users[2])
                assert third["status"] == "queued"  # full again at 2

                # a deactivated agent gets nothing new, whatever its capacity
                c.post(f"/v1/agents/{agent['id']}/deactivate").raise_for_status()
                c.patch(f"/v1/agents/{agent['id']}", json={"max_concurrent": 10}).raise_for_status()
                h = {"Authorization": f"Bearer {users[2]}"}
                mine = (await http.get("/v1/conversations", headers=h)).json()["conversations"]
                assert [(m["status"], m["assignee"]) for m in mine] == [("queued", None)]
    finally:
        await ws.close()


def test_the_routes_are_in_the_openapi_schema(node: LiveServer) -> None:
    paths = httpx.get(node.url + "/schema/openapi.json", timeout=15).json()["paths"]
    expected = {"/v1/agents": {"get", "post"}, "/v1/agents/{agent_id}": {"get", "patch"},
                "/v1/teams": {"get", "post"}, "/v1/teams/{team_id}": {"get", "patch", "delete"},
                "/v1/teams/{team_id}/agents/{agent_id}": {"put", "delete"}}
    for path, methods in expected.items():
        assert methods <= set(paths[path]), (path, sorted(paths[path]))
    agent = paths["/v1/agents/{agent_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert "$ref" in agent or "properties" in agent  # a described body, not a bare object
