"""The admin pages' Agents and Teams tabs in Chromium: create an agent with a generated password
(a weak one is refused with the server's reason), give it a capacity and a team, see it go online
when it signs in to /agent with that password, reset its password and deactivate it. Names are
shown as text, never as markup."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.accounts.tenants import DEMO_AGENT_EMAIL, DEMO_AGENT_FILE
from tests.support.live import LiveServer
from tests.web.conftest import Guard, login_agent, new_page, shot, start_server

pytestmark = pytest.mark.slow

HOSTILE = '<img src=x onerror="alert(1)">Zoë'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("web-agents"), demo_knowledge=False)
    yield srv
    srv.stop()


def open_admin(page: Any, server: LiveServer, tab: str) -> None:
    page.goto(server.url + "/admin")
    page.fill("[data-testid=admin-key]", server.admin_key)
    page.click("#gate-form button[type=submit]")
    page.click(f"#tabs button[data-tab={tab}]")


def agent_row(page: Any, email: str) -> Any:
    return page.locator("[data-testid=agent]", has_text=email)


def test_create_an_agent_in_the_admin_pages_and_sign_in_as_it(server: LiveServer, browser: Any,
                                                             tmp_path: Path) -> None:
    guard = Guard()
    admin = new_page(browser, guard)
    open_admin(admin, server, "agents")
    agent_row(admin, DEMO_AGENT_EMAIL).wait_for()  # the demo tenant's own agent is there from the start

    # A weak password is refused with the policy's reason, and nothing is created.
    email = "zoe@example.com"
    admin.fill("[data-testid=a-name]", HOSTILE)
    admin.fill("[data-testid=a-email]", email)
    admin.fill("[data-testid=a-password]", "password123")
    admin.click("#agent-form button[type=submit]")
    admin.locator("[data-testid=agent-error]", has_text="common").wait_for()
    assert agent_row(admin, email).count() == 0

    admin.click("#a-generate")
    password = admin.input_value("[data-testid=a-password]")
    assert len(password) >= 16
    admin.fill("#a-capacity", "2")
    admin.click("#agent-form button[type=submit]")
    row = agent_row(admin, email)
    row.wait_for()
    assert admin.locator("[data-testid=agent-error]").inner_text() == ""
    assert HOSTILE in row.inner_text()  # the name as typed, as text
    assert admin.locator("#agents img").count() == 0
    assert row.locator("[data-testid=capacity]").input_value() == "2"
    assert row.locator("[data-testid=presence]").inner_text() == "offline"
    with server.admin() as c:  # a plain name for the screenshots below
        agent_id = next(a["id"] for a in c.get("/v1/agents").json()["agents"] if a["email"] == email)
        c.patch(f"/v1/agents/{agent_id}", json={"name": "Zoë Park"}).raise_for_status()

    # A team, with the new agent in it.
    admin.click("#tabs button[data-tab=teams]")
    admin.fill("[data-testid=t-name]", "Night shift")
    admin.click("#team-form button[type=submit]")
    team = admin.locator("[data-testid=team]", has_text="Night shift")
    team.wait_for()
    team.locator("select").select_option(label=f"Zoë Park · {email}")
    team.locator("form.row button[type=submit]", has_text="Add").click()
    admin.locator("[data-testid=team] [data-testid=member]", has_text=email).wait_for()
    admin.evaluate("document.getElementById('toast').hidden = true")
    shot(admin, "admin-teams.png", tmp_path)

    # The agent signs in to the console with the password the page generated.
    console = new_page(browser, guard)
    login_agent(console, server, email, password)
    admin.click("#tabs button[data-tab=agents]")
    row = agent_row(admin, email)
    row.locator("[data-testid=presence]", has_text="online").wait_for()
    assert row.locator("input[type=checkbox]").is_checked()  # member of Night shift
    admin.evaluate("document.getElementById('toast').hidden = true")
    shot(admin, "admin-agents.png", tmp_path)

    with server.admin() as c:
        stored = next(a for a in c.get("/v1/agents").json()["agents"] if a["email"] == email)
        teams = c.get("/v1/teams").json()["teams"]
    assert (stored["name"], stored["max_concurrent"], stored["online"]) == ("Zoë Park", 2, True)
    assert stored["team_ids"] == [t["id"] for t in teams if t["name"] == "Night shift"]

    # Capacity edited in place.
    row.locator("[data-testid=capacity]").fill("4")
    row.locator("button", has_text="Save").click()
    admin.locator("#toast", has_text="is 4").wait_for()
    with server.admin() as c:
        assert c.get(f"/v1/agents/{stored['id']}").json()["max_concurrent"] == 4

    # Reset the password from the page: the old one stops working, the new one works.
    row = agent_row(admin, email)
    row.locator("button", has_text="Reset password").click()
    row.locator("form button", has_text="Generate").click()
    new_password = row.locator("form input").input_value()
    row.locator("form button[type=submit]").click()
    admin.locator("#toast", has_text="New password set").wait_for()

    def login(pw: str) -> int:
        return httpx.post(server.url + "/v1/auth/login", json={"email": email, "password": pw}, timeout=15).status_code

    assert login(password) == 401
    assert login(new_password) == 200

    # Deactivate: shown on the row, and the agent can no longer sign in.
    agent_row(admin, email).locator("button", has_text="Deactivate").click()
    agent_row(admin, email).locator(".pill", has_text="deactivated").wait_for()
    assert login(new_password) == 401
    guard.check()
    admin.context.close()
    console.context.close()


def test_the_demo_agent_signs_in_to_the_console_with_its_printed_login(server: LiveServer, browser: Any) -> None:
    fields = dict(line.split(": ", 1) for line in (server.data_dir / DEMO_AGENT_FILE).read_text().splitlines())
    assert fields["email"] == DEMO_AGENT_EMAIL
    assert f"{DEMO_AGENT_EMAIL} / {fields['password']}" in server.log()  # what `make run` printed
    guard = Guard()
    console = new_page(browser, guard)
    login_agent(console, server, DEMO_AGENT_EMAIL, fields["password"])
    guard.check()
    console.context.close()
