"""Agent login and agent passwords: argon2 off the event loop with bounded concurrency, rate
limits and a lockout window, no email enumeration by timing, and a password policy."""

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.accounts.login_guard import LoginGuard, LoginLimits
from server.accounts.passwords import PasswordHashing, check_password_policy
from server.errors import BadInput, RateLimited, Unavailable
from tests.support.inproc import InProcServer, make_settings

GOOD = "correct horse battery"


class GateHasher:
    """A real argon2 hasher whose ``verify`` waits for the test to open the gate; it tells
    how many checks run at once and on which threads."""

    def __init__(self) -> None:
        self.real = PasswordHasher()
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)
        self.lock = threading.Lock()
        self.inside = self.most_inside = self.calls = 0
        self.threads: set[int] = set()

    def hash(self, password: str) -> str:
        return self.real.hash(password)

    def verify(self, hash: str, password: str) -> bool:
        with self.lock:
            self.calls += 1
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            self.threads.add(threading.get_ident())
        self.entered.release()
        try:
            self.gate.wait(10)
            return self.real.verify(hash, password)
        finally:
            with self.lock:
                self.inside -= 1


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcServer]:
    # Login limits high enough that only the tests that are about them trip them.
    server = InProcServer(make_settings(tmp_path_factory.mktemp("login"), login_burst_per_ip=1000,
                                        login_burst_per_account=1000, login_lockout_failures=1000)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _real_hasher(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "srv" in request.fixturenames:
        request.getfixturevalue("srv").app.state.passwords._hasher = PasswordHasher()


def _login(srv: InProcServer, email: str, password: str, **extra: Any) -> httpx.Response:
    return httpx.post(srv.url + "/v1/auth/login", json={"email": email, "password": password, **extra}, timeout=30)


# -- item 4: argon2 runs in worker threads, a bounded number at a time ------------------------------


def test_a_login_being_checked_does_not_hold_the_event_loop(srv: InProcServer) -> None:
    srv.agent("Ann", "ann1@x.io")
    gate = GateHasher()
    srv.app.state.passwords._hasher = gate
    result: list[httpx.Response] = []
    t = threading.Thread(target=lambda: result.append(_login(srv, "ann1@x.io", GOOD)))
    t.start()
    try:
        assert gate.entered.acquire(timeout=10), "the login never reached the password check"
        # The check is parked in the hasher: the server's loop still runs other work.
        assert srv.call(asyncio.sleep(0, "loop alive"), timeout=5) == "loop alive"
        assert httpx.get(srv.url + "/healthz", timeout=5).status_code == 200
    finally:
        gate.gate.set()
        t.join(30)
    assert result[0].status_code == 200, result[0].text
    assert threading.main_thread().ident not in gate.threads


async def test_password_checks_run_at_most_concurrency_at_once() -> None:
    gate = GateHasher()
    hashing = PasswordHashing(concurrency=2, queue_max=10, hasher=gate)
    stored = gate.hash(GOOD)
    tasks = [asyncio.create_task(hashing.verify(stored, GOOD)) for _ in range(6)]
    for _ in range(2):
        assert await asyncio.to_thread(gate.entered.acquire, True, 10)
    await asyncio.sleep(0.2)  # room for a third check to start, if the bound did not hold
    assert gate.inside == 2
    gate.gate.set()
    assert await asyncio.gather(*tasks) == [True] * 6
    assert gate.most_inside == 2


async def test_a_full_password_queue_answers_unavailable_instead_of_growing() -> None:
    gate = GateHasher()
    hashing = PasswordHashing(concurrency=1, queue_max=1, hasher=gate)
    stored = gate.hash(GOOD)
    running = asyncio.create_task(hashing.verify(stored, GOOD))
    assert await asyncio.to_thread(gate.entered.acquire, True, 10)
    waiting = asyncio.create_task(hashing.verify(stored, GOOD))
    await asyncio.sleep(0)
    with pytest.raises(Unavailable) as refused:
        await hashing.verify(stored, GOOD)
    assert refused.value.retry_after_ms
    gate.gate.set()
    assert list(await asyncio.gather(running, waiting)) == [True, True]


# -- item 7: an unknown email costs a verification too -------------------------------------------


def test_unknown_email_is_checked_against_a_dummy_hash_of_the_same_cost(srv: InProcServer) -> None:
    srv.agent("Ann", "ann2@x.io")
    gate = GateHasher()
    gate.gate.set()
    srv.app.state.passwords._hasher = gate
    assert _login(srv, "nobody@x.io", "whatever it is").status_code == 401
    assert gate.calls == 1
    assert _login(srv, "ann2@x.io", "wrong password here").status_code == 401
    assert gate.calls == 2
    # the dummy was hashed with the parameters of real agents, so it is as slow to check
    real_params = gate.hash(GOOD).rsplit("$", 2)[0]
    assert srv.app.state.passwords._dummy.rsplit("$", 2)[0] == real_params


# -- item 6 (login): rate limits and lockout -------------------------------------------------------


def test_wrong_passwords_lock_the_account_even_for_the_right_one(tmp_path: Path) -> None:
    with InProcServer(make_settings(tmp_path / "data", login_burst_per_ip=1000, login_burst_per_account=1000,
                                    login_lockout_failures=5, login_lockout_s=600)) as srv:
        srv.agent("Ann", "ann@x.io")
        codes = [_login(srv, "ann@x.io", f"wrong guess {i}").status_code for i in range(5)]
        assert codes == [401] * 5
        r = _login(srv, "ann@x.io", GOOD)
        assert r.status_code == 429, r.text
        err = r.json()["error"]
        assert err["code"] == "rate_limited"
        assert 590_000 <= err["retry_after_ms"] <= 600_000
        assert 590 <= int(r.headers["Retry-After"]) <= 600
        # naming a tenant does not open a fresh budget of guesses
        assert _login(srv, "ann@x.io", GOOD, tenant_id="t" * 32).status_code == 429
        # another account is not locked by Ann's failures
        srv.agent("Bob", "bob@x.io")
        assert _login(srv, "bob@x.io", GOOD).status_code == 200


def test_one_address_is_limited_across_accounts(tmp_path: Path) -> None:
    with InProcServer(make_settings(tmp_path / "data", login_burst_per_ip=8, login_rate_per_ip=0.001)) as srv:
        codes = [_login(srv, f"user{i}@x.io", "not the password").status_code for i in range(10)]
        assert codes[:8] == [401] * 8
        assert codes[8:] == [429, 429]
        r = _login(srv, "someone@x.io", "not the password")
        assert r.json()["error"]["code"] == "rate_limited" and r.json()["error"]["retry_after_ms"] > 0


def test_guard_lockout_window_and_expiry() -> None:
    now = [0.0]
    guard = LoginGuard(LoginLimits(rate_per_ip=100, burst_per_ip=100, rate_per_account=100, burst_per_account=100,
                                   lockout_failures=3, lockout_window_s=60, lockout_s=300), clock=lambda: now[0])
    acct = guard.account_key(" Ann@X.io")
    assert acct == guard.account_key("ann@x.io")
    for _ in range(2):
        guard.check("1.2.3.4", acct)
        guard.failed(acct)
    now[0] = 61.0  # the first two failures leave the window
    guard.check("1.2.3.4", acct)
    guard.failed(acct)
    guard.check("1.2.3.4", acct)  # one failure in the window: not locked
    guard.failed(acct)
    guard.failed(acct)
    with pytest.raises(RateLimited) as locked:
        guard.check("5.6.7.8", acct)  # from any address
    assert locked.value.retry_after_ms == 300_000
    now[0] += 300.5
    guard.check("1.2.3.4", acct)
    guard.succeeded(acct)


def test_guard_memory_is_bounded() -> None:
    guard = LoginGuard(LoginLimits(max_keys=50))
    for i in range(1000):
        acct = guard.account_key(f"u{i}@x.io")
        guard.check(f"10.0.{i // 256}.{i % 256}", acct)
        guard.failed(acct)
    assert len(guard._ips._items) == 50
    assert len(guard._accounts._items) == 50
    assert len(guard._failures._items) == 50


# -- item 8: password policy -------------------------------------------------------------------------


@pytest.mark.parametrize(("password", "why"), [
    ("password", "at least"),
    ("Short1!", "at least"),
    ("password123", "common"),
    ("Iloveyou12", "common"),
    ("QWERTYUIOP", "common"),
    ("annabel.smith@x.io", "email or name"),
    ("annabel.smith", "email or name"),
    ("Ann Smith Jones", "email or name"),
])
def test_weak_agent_passwords_are_refused_naming_the_field(srv: InProcServer, password: str, why: str) -> None:
    with srv.admin() as c:
        r = c.post("/v1/agents", json={"name": "Ann Smith Jones", "email": "annabel.smith@x.io", "password": password})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "validation_failed"
    assert err["field"] == "password"
    assert why in err["detail"]


def test_a_good_password_is_accepted_and_logs_in(srv: InProcServer) -> None:
    agent_id, _ = srv.agent("Ann", "ann3@x.io", password=GOOD)
    r = _login(srv, "ANN3@x.io", GOOD)
    assert r.status_code == 200 and r.json()["agent_id"] == agent_id


def test_policy_minimum_is_a_setting() -> None:
    check_password_policy("a long enough one", min_length=10)
    with pytest.raises(BadInput):
        check_password_policy("a long enough one", min_length=30)


# -- fuzz: whatever a visitor sends to the login answers with the contract's error, never a 500 --------

_finite = st.floats(allow_nan=False, allow_infinity=False)
_scalar = st.none() | st.booleans() | st.integers() | _finite | st.text(max_size=50)
_json_value = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(
    st.fixed_dictionaries({"email": st.text(max_size=400), "password": st.text(max_size=1100)},
                          optional={"tenant_id": st.none() | st.text(max_size=80), "extra": _json_value}),
    _json_value,
))
def test_login_fuzz_never_fails_inside(srv: InProcServer, body: Any) -> None:
    r = httpx.post(srv.url + "/v1/auth/login", json=body, timeout=30)
    assert r.status_code in (400, 401, 422, 429), r.text
    assert r.json()["error"]["code"] in ("bad_frame", "validation_failed", "token_invalid", "rate_limited")
