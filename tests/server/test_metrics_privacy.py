"""What users type never becomes a Prometheus label; ``/metrics`` holds no tenant data and can be
kept to the operator; each tenant's dashboard figures come from an authenticated route and show
that tenant alone."""

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import bots.handoff
from server.accounts.tenants import create_tenant
from server.core.metrics import HANDOFF_REASONS, handoff_label
from tests.support.inproc import InProcServer, make_settings

TOKEN = "operator-scrape-token"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcServer]:
    server = InProcServer(make_settings(tmp_path_factory.mktemp("metrics"), metrics_token=TOKEN)).start()
    yield server
    server.stop()


def _scrape(srv: InProcServer) -> str:
    r = httpx.get(srv.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert r.status_code == 200
    return r.text


def _handoff(srv: InProcServer, token: str, reason: str) -> None:
    h = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=srv.url, headers=h, timeout=10) as c:
        cid = c.post("/v1/conversations", json={}).json()["conversation"]["id"]
        assert c.post(f"/v1/conversations/{cid}/handoff", json={"reason": reason}).status_code == 200


def test_typed_reasons_are_not_labels_and_series_stay_bounded(srv: InProcServer) -> None:
    user = srv.token("mia")
    for i in range(12):
        _handoff(srv, user, f"my card 4111-1111 was charged twice, order {i}")
    _handoff(srv, user, "frustration")  # a real reason code keeps its label
    text = _scrape(srv)
    assert "4111" not in text and "charged twice" not in text
    labels = set(re.findall(r'parley_handoffs_total\{reason="([^"]*)"\}', text))
    assert labels <= HANDOFF_REASONS | {"other"}
    assert {"other", "frustration"} <= labels
    assert not re.search(r'tenant', text)


def test_metrics_needs_the_operator_token_when_one_is_set(srv: InProcServer) -> None:
    assert httpx.get(srv.url + "/metrics", timeout=10).status_code == 401
    r = httpx.get(srv.url + "/metrics", headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert r.status_code == 401
    assert httpx.get(srv.url + "/metrics", headers={"Authorization": srv.admin_key}, timeout=10).status_code == 401


def test_dashboard_figures_are_per_tenant_and_need_an_admin(srv: InProcServer) -> None:
    other = srv.call(create_tenant(srv.app.state.db, "Other Inc"))
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {other.admin_key}"}, timeout=10) as c:
        before = c.get("/v1/admin/stats").json()
        carol = c.post("/v1/tokens", json={"sub": "carol", "role": "user"}).json()["token"]
    _handoff(srv, srv.token("ann"), "the secret project falcon")
    _handoff(srv, carol, "user_request")
    with srv.admin() as c:
        mine = c.get("/v1/admin/stats").json()
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {other.admin_key}"}, timeout=10) as c:
        theirs = c.get("/v1/admin/stats").json()
    assert before["handoffs"] == {}
    assert theirs["handoffs"] == {"user_request": 1}
    assert mine["handoffs"].get("other", 0) >= 1 and "user_request" not in mine["handoffs"]
    assert "falcon" not in str(mine) and "falcon" not in str(theirs)
    assert set(mine) == {"connections", "bot_answers", "handoffs", "since"}
    assert httpx.get(srv.url + "/v1/admin/stats", timeout=10).status_code == 401
    user = srv.token("bea")
    r = httpx.get(srv.url + "/v1/admin/stats", headers={"Authorization": f"Bearer {user}"}, timeout=10)
    assert r.status_code == 403


def test_every_reason_code_of_the_handoff_policy_is_a_label() -> None:
    src = Path(bots.handoff.__file__).read_text()
    codes = set(re.findall(r'handoff\("([a-z_]+)"', src))
    codes |= set(re.findall(r'HandoffDecision\("(?:handoff|offer_human|answer)", "([a-z_]+)"', src))
    codes -= {"none", "offer_declined", "outside_business_hours"}  # answers, never handoffs
    assert codes and codes <= HANDOFF_REASONS, codes - HANDOFF_REASONS
    assert handoff_label("user_request") == "user_request"
    assert handoff_label("safety") == "safety" and handoff_label("rule:recall") == "tenant_rule"
    assert handoff_label("please, a human: I'm Bob") == "other" and handoff_label(None) == "other"
