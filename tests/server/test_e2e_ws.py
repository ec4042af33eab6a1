"""The same end-to-end WebSocket suite on socketify and on uvicorn, real sockets on loopback."""

import asyncio
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.live import LiveServer, free_port
from tests.support.ws import WsClient


@pytest.fixture(scope="module", params=["socketify", "uvicorn"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data: Path = tmp_path_factory.mktemp(f"e2e-{request.param}")
    srv = LiveServer(request.param, free_port(), data, {"PARLEY_ALLOWED_ORIGINS": '["https://shop.example"]',
                                                          "PARLEY_HELLO_TIMEOUT_S": "1"}).start().without_bot()
    yield srv
    srv.stop()


async def test_send_ack_and_fanout_to_second_device(server: LiveServer) -> None:
    token = server.token("e2e-alice", name="Alice")
    a = await WsClient.connect(server.ws_url, token)
    b = await WsClient.connect(server.ws_url, token)
    cid = await a.start()
    await b.send({"type": "subscribe", "conversation_id": cid, "ref": "s"})
    await b.expect("subscribed", conversation_id=cid)
    ack = await a.say(cid, "hello from device A")
    assert ack["seq"] == 1
    got = await b.expect("message", conversation_id=cid)
    assert got["message"]["text"] == "hello from device A"
    assert got["message"]["seq"] == 1
    assert got["message"]["sender"] == {"kind": "user", "id": "e2e-alice", "name": "Alice"}
    await a.close()
    await b.close()


async def test_idempotent_send_returns_original_ack(server: LiveServer) -> None:
    c = await WsClient.connect(server.ws_url, server.token("e2e-idem"))
    cid = await c.start()
    cmid = str(uuid.uuid4())
    first = await c.say(cid, "once", cmid)
    second = await c.say(cid, "once", cmid)
    assert (first["message_id"], first["seq"]) == (second["message_id"], second["seq"])
    await c.send({"type": "send", "conversation_id": cid, "client_msg_id": cmid, "text": "twice"})
    err = await c.expect("error", client_msg_id=cmid)
    assert err["code"] == "idempotency_key_reused"
    with server.admin() as admin:
        r = admin.get(f"/v1/conversations/{cid}/messages")
    texts = [m["text"] for m in r.json()["messages"]]
    assert texts == ["once"]
    await c.close()


async def test_resume_replays_missed_messages_in_order(server: LiveServer) -> None:
    token = server.token("e2e-resume")
    a = await WsClient.connect(server.ws_url, token)
    cid = await a.start()
    for i in range(5):
        await a.say(cid, f"m{i}")
    await a.close()
    b = await WsClient.connect(server.ws_url, token, resume={cid: 2})
    sub = await b.expect("subscribed", conversation_id=cid)
    msgs = [f for f in b.seen if f["type"] == "message" and f["conversation_id"] == cid]
    assert [m["message"]["seq"] for m in msgs] == [3, 4, 5]
    assert sub["last_seq"] == 5
    await b.close()


async def test_unusable_cursors(server: LiveServer) -> None:
    mine = await WsClient.connect(server.ws_url, server.token("e2e-cursor-a"))
    cid = await mine.start()
    await mine.say(cid, "x")
    await mine.send({"type": "subscribe", "conversation_id": cid, "after_seq": 99, "ref": "f"})
    assert (await mine.expect("error", ref="f"))["code"] == "invalid_cursor"
    other = await WsClient.connect(server.ws_url, server.token("e2e-cursor-b"), resume={cid: 0})
    err = await other.expect("error")
    assert err["code"] == "resync_required"
    assert not [f for f in other.seen if f["type"] == "message"]
    await other.send({"type": "subscribe", "conversation_id": cid, "ref": "o"})
    assert (await other.expect("error", ref="o"))["code"] == "not_found"
    await mine.close()
    await other.close()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "bad_frame"),
        ("[1,2]", "bad_frame"),
        ('{"type": "warp"}', "unknown_type"),
        ('{"type": "ping", "x": NaN}', "bad_frame"),
        ('{"type": "ping", "ref": "a", "ref": "b"}', "bad_frame"),
        ("[" * 40_000 + "]" * 40_000, "too_long"),
        ("[" * 20_000 + "]" * 20_000, "bad_frame"),
        ('{"type": "read", "conversation_id": "c", "seq": ' + "9" * 5000 + "}", "bad_frame"),
    ],
)
async def test_bad_frames_get_clear_errors_and_the_connection_survives(server: LiveServer, raw: str,
                                                                        code: str) -> None:
    c = await WsClient.connect(server.ws_url, server.token("e2e-bad"))
    await c.send(raw)
    err = await c.expect("error")
    assert err["code"] == code
    assert err["fatal"] is False
    await c.send({"type": "ping", "ref": "alive"})
    await c.expect("pong", ref="alive")
    await c.close()


async def _send_then_recv(c: WsClient, raw: str) -> None:
    await c.send(raw)  # socketify may already refuse while the frame is still being sent
    for _ in range(3):  # uvicorn says too_long and bye before its close
        await c.recv(5)


async def test_huge_frame_is_refused_by_the_transport_and_the_server_stays_up(server: LiveServer) -> None:
    c = await WsClient.connect(server.ws_url, server.token("e2e-huge"))
    import websockets

    with pytest.raises(websockets.ConnectionClosed):
        await _send_then_recv(c, "x" * 1_000_000)
    d = await WsClient.connect(server.ws_url, server.token("e2e-huge"))
    await d.send({"type": "ping", "ref": "alive"})
    await d.expect("pong", ref="alive")
    await d.close()


async def test_binary_and_empty_binary_frames(server: LiveServer) -> None:
    c = await WsClient.connect(server.ws_url, server.token("e2e-bin"))
    for payload in (b"\x00\x01", b""):
        await c.send(payload)
        assert (await c.expect("error"))["code"] == "bad_frame"
    await c.send({"type": "ping", "ref": "alive"})
    await c.expect("pong", ref="alive")
    await c.close()


@pytest.mark.parametrize(
    ("frame", "code", "field"),
    [
        ({"type": "send", "conversation_id": "c", "text": "hi"}, "validation_failed", "client_msg_id"),
        ({"type": "send", "conversation_id": 5, "client_msg_id": "x", "text": "hi"}, "validation_failed",
         "conversation_id"),
        ({"type": "typing", "conversation_id": "c", "active": "yes"}, "validation_failed", "active"),
    ],
)
async def test_missing_or_mistyped_fields_are_named(server: LiveServer, frame: dict[str, object], code: str,
                                                     field: str) -> None:
    c = await WsClient.connect(server.ws_url, server.token("e2e-fields"))
    await c.send(frame)
    err = await c.expect("error")
    assert (err["code"], err.get("field")) == (code, field)
    await c.close()


@pytest.mark.parametrize(
    ("text", "code"),
    [("   ", "empty_message"), ("x" * 4001, "too_long"), ("a\u0000b", "validation_failed")],
)
async def test_bad_text_is_refused_and_nothing_is_stored(server: LiveServer, text: str, code: str) -> None:
    c = await WsClient.connect(server.ws_url, server.token("e2e-text"))
    cid = await c.start()
    cmid = str(uuid.uuid4())
    await c.send({"type": "send", "conversation_id": cid, "client_msg_id": cmid, "text": text})
    assert (await c.expect("error", client_msg_id=cmid))["code"] == code
    with server.admin() as admin:
        assert admin.get(f"/v1/conversations/{cid}/messages").json()["messages"] == []
    await c.close()


async def test_lone_surrogate_is_refused(server: LiveServer) -> None:
    c = await WsClient.connect(server.ws_url, server.token("e2e-surrogate"))
    cid = await c.start()
    raw = f'{{"type": "send", "conversation_id": "{cid}", "client_msg_id": "{uuid.uuid4()}", "text": "a\\ud800b"}}'
    await c.send(raw)
    assert (await c.expect("error"))["code"] == "validation_failed"
    await c.close()


async def test_no_hello_in_time_gets_auth_timeout_then_bye(server: LiveServer) -> None:
    c = await WsClient.connect(server.ws_url)
    err = await c.expect("error", timeout=5)
    assert (err["code"], err["fatal"]) == ("auth_timeout", True)
    bye = await c.expect("bye")
    assert bye["reconnect"] is False


@pytest.mark.parametrize("kind", ["forged", "none", "expired", "garbage"])
async def test_bad_tokens_are_refused(server: LiveServer, kind: str) -> None:
    import time

    import jwt

    good = server.token("e2e-tok")
    claims = jwt.decode(good, options={"verify_signature": False})
    if kind == "forged":
        token = jwt.encode(claims, "not-the-secret-but-long-enough-for-hs256!!", algorithm="HS256")
    elif kind == "none":
        token = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    elif kind == "expired":
        token = "x"
        claims["exp"] = int(time.time()) - 3600
        token = jwt.encode(claims, "whatever-secret-that-is-long-enough-for-hs256", algorithm="HS256")
    else:
        token = "abc.def.ghi"
    c = await WsClient.connect(server.ws_url)
    await c.send({"type": "hello", "token": token})
    err = await c.expect("error")
    assert err["code"] in ("token_invalid", "token_expired")
    assert err["fatal"] is True
    await c.expect("bye")


async def test_disallowed_origin_is_refused(server: LiveServer) -> None:
    bad = await WsClient.connect(server.ws_url, origin="https://evil.example")
    assert (await bad.expect("error"))["code"] == "forbidden"
    good = await WsClient.connect(server.ws_url, server.token("e2e-origin"), origin="https://shop.example")
    await good.send({"type": "ping", "ref": "p"})
    await good.expect("pong", ref="p")
    await good.close()


async def test_flooding_is_rate_limited_and_not_stored(server: LiveServer) -> None:
    c = await WsClient.connect(server.ws_url, server.token("e2e-flood"))
    cid = await c.start()
    sent = []
    for i in range(60):
        cmid = str(uuid.uuid4())
        sent.append(cmid)
        await c.send({"type": "send", "conversation_id": cid, "client_msg_id": cmid, "text": f"f{i}"})
    frames = await c.drain(0.5)
    acks = {f["client_msg_id"] for f in frames if f["type"] == "ack"}
    limited = [f for f in frames if f["type"] == "error" and f["code"] == "rate_limited"]
    assert limited
    assert all(f["retry_after_ms"] > 0 for f in limited)
    with server.admin() as admin:
        stored = admin.get(f"/v1/conversations/{cid}/messages", params={"limit": 200}).json()["messages"]
    assert {m["client_msg_id"] for m in stored} == acks
    await c.close()


async def test_connection_cap_per_user(server: LiveServer) -> None:
    token = server.token("e2e-cap")
    conns = [await WsClient.connect(server.ws_url, token) for _ in range(10)]
    extra = await WsClient.connect(server.ws_url)
    await extra.send({"type": "hello", "token": token})
    assert (await extra.expect("error"))["code"] == "connection_limit"
    for c in conns:
        await c.close()


async def test_rest_history_matches_the_socket(server: LiveServer) -> None:
    token = server.token("e2e-rest")
    c = await WsClient.connect(server.ws_url, token)
    cid = await c.start()
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as http:
        r = await http.post(f"/v1/conversations/{cid}/messages",
                            json={"client_msg_id": str(uuid.uuid4()), "text": "via rest"})
        assert r.status_code == 201
        live = await c.expect("message", conversation_id=cid)
        assert live["message"]["text"] == "via rest"
        hist = (await http.get(f"/v1/conversations/{cid}/messages", params={"after_seq": 0})).json()
        assert [m["text"] for m in hist["messages"]] == ["via rest"]
        bad = await http.get(f"/v1/conversations/{cid}/messages", params={"after_seq": 7})
        assert (bad.status_code, bad.json()["error"]["code"]) == (409, "invalid_cursor")
    await c.close()


def test_openapi_schema_is_served(server: LiveServer) -> None:
    r = httpx.get(server.url + "/schema/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert "/v1/conversations/{conversation_id}/messages" in paths


async def test_sigterm_sends_bye_with_reconnect(tmp_path: Path) -> None:
    for kind in ("socketify", "uvicorn"):
        srv = LiveServer(kind, free_port(), tmp_path / kind, {}).start()
        c = await WsClient.connect(srv.ws_url, srv.token("e2e-term"))
        srv.signal(signal.SIGTERM)
        bye = await c.expect("bye", timeout=10)
        assert bye["reconnect"] is True, kind
        assert srv.wait(15) is not None
        assert "Traceback" not in srv.log(), srv.log()
        await asyncio.sleep(0)
