"""The HTTP surface a browser can reach: no documentation UI loaded from a CDN, JSON routes that
refuse bodies not declared as JSON (no CORS-free ``text/plain`` posts), and a socket Origin
check that compares scheme, host and port."""

import uuid
from collections.abc import Iterator

import httpx
import pytest

from server.core.origins import origin_allowed, origin_of
from tests.support.inproc import InProcServer, make_settings
from tests.support.ws import WsClient


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcServer]:
    with InProcServer(make_settings(tmp_path_factory.mktemp("hardening"))) as server:
        yield server.without_bot()


def test_the_schema_is_served_as_json_and_no_cdn_ui_is(srv: InProcServer) -> None:
    r = httpx.get(srv.url + "/schema/openapi.json", timeout=10)
    assert r.status_code == 200 and r.json()["openapi"].startswith("3.")
    for path in ("/schema", "/schema/swagger", "/schema/redoc", "/schema/elements", "/schema/rapidoc",
                 "/schema/scalar", "/schema/stoplight"):
        r = httpx.get(srv.url + path, timeout=10)
        assert r.status_code == 404 or "json" in r.headers["content-type"], path
        assert "<script" not in r.text, path
        for cdn in ("cdn.jsdelivr.net", "unpkg.com", "cdnjs", "fonts.googleapis"):
            assert cdn not in r.text, (path, cdn)


def _widget_key(srv: InProcServer) -> str:
    return str(srv.app.state.demo.tenant.widget_key)


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                   None])
def test_a_json_route_refuses_a_body_not_declared_as_json(srv: InProcServer, ctype: str | None) -> None:
    body = f'{{"widget_key": "{_widget_key(srv)}"}}'
    headers = {"Content-Type": ctype} if ctype else {}
    r = httpx.post(srv.url + "/v1/widget/session", content=body, headers=headers, timeout=10)
    assert r.status_code == 415, r.text
    assert r.json()["error"]["code"] == "unsupported_media_type"
    ok = httpx.post(srv.url + "/v1/widget/session", content=body, timeout=10,
                    headers={"Content-Type": "application/json; charset=utf-8"})
    assert ok.status_code == 201, ok.text


def test_a_text_plain_message_post_is_refused_and_not_stored(srv: InProcServer) -> None:
    auth = {"Authorization": f"Bearer {srv.token('hardening-user')}"}
    with httpx.Client(base_url=srv.url, headers=auth, timeout=10) as c:
        cid = c.post("/v1/conversations", json={}).json()["conversation"]["id"]
        body = f'{{"client_msg_id": "{uuid.uuid4()}", "text": "from a form"}}'
        r = c.post(f"/v1/conversations/{cid}/messages", content=body, headers={"Content-Type": "text/plain"})
        assert (r.status_code, r.json()["error"]["code"]) == (415, "unsupported_media_type")
        assert c.get(f"/v1/conversations/{cid}/messages").json()["messages"] == []
        # A body-less status change needs no content type.
        assert c.post(f"/v1/conversations/{cid}/handoff").status_code == 200


def test_origins_compare_scheme_host_and_port() -> None:
    assert origin_of("https://Shop.Example") == ("https", "shop.example", 443)
    assert origin_of("wss://shop.example:8443/v1/ws") == ("https", "shop.example", 8443)
    assert origin_of("null") is None
    own = "ws://127.0.0.1:8000"
    assert origin_allowed("http://127.0.0.1:8000", [], own=own)
    assert not origin_allowed("https://127.0.0.1:8000", [], own=own)
    assert not origin_allowed("http://127.0.0.1:8001", [], own=own)
    assert not origin_allowed("null", [], own=own)
    assert origin_allowed("https://shop.example", ["https://shop.example:443"], own=own)
    assert not origin_allowed("http://shop.example", ["https://shop.example"], own=own)
    assert origin_allowed("https://parley.example", [], own="https://parley.example/")
    assert origin_allowed(None, [], own=own)


async def test_a_socket_from_the_same_host_over_another_scheme_is_refused(srv: InProcServer) -> None:
    bad = await WsClient.connect(srv.ws_url, origin=f"https://127.0.0.1:{srv.port}")
    assert (await bad.expect("error"))["code"] == "forbidden"
    await bad.close()
    good = await WsClient.connect(srv.ws_url, srv.token("hardening-ws"), origin=f"http://127.0.0.1:{srv.port}")
    await good.send({"type": "ping", "ref": "p"})
    await good.expect("pong", ref="p")
    await good.close()


def test_a_body_nested_thousands_deep_is_bad_input_not_a_server_error(srv: InProcServer) -> None:
    deep = '{"text": ' + "[" * 100_000 + "]" * 100_000 + ', "client_msg_id": "x"}'
    auth = {"Authorization": f"Bearer {srv.token('hardening-deep')}", "Content-Type": "application/json"}
    r = httpx.post(srv.url + f"/v1/conversations/{'0' * 32}/messages", content=deep, headers=auth, timeout=10)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "bad_frame")
