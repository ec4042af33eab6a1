"""Attachments through the real server (uvicorn on loopback), on SQLite and PostgreSQL: upload,
send with a message over the socket and REST, delivery and history, download by members only,
and each bad input refused with a clear error and nothing stored."""

import asyncio
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import func
from sqlmodel import select

from server.accounts.tenants import create_tenant
from server.attachments.models import Attachment
from server.core.models import Message
from tests.conftest import create_pg_database, drop_pg_database
from tests.server.attachment_files import PDF, jpeg_with_exif, png, png_bomb
from tests.support.inproc import FAST, InProcServer, make_settings
from tests.support.ws import WsClient

MAX_FILE = 300_000


@dataclass
class World:
    srv: InProcServer
    alice: str
    bob: str
    agent: str
    agent_id: str
    carol: str  # another tenant's user
    conv_a: str
    conv_b: str
    conv_c: str

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.srv.url, headers={"Authorization": f"Bearer {token}"}, timeout=20)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def w(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    url = asyncio.run(create_pg_database()) if request.param == "postgres" else None
    data: Path = tmp_path_factory.mktemp(f"att-{request.param}")
    srv = InProcServer(make_settings(data, url, attachment_max_file_bytes=MAX_FILE,
                                     attachment_max_image_pixels=4_000_000, **FAST)).start().without_bot()
    try:
        other = srv.call(create_tenant(srv.app.state.db, "Other Inc"))
        agent_id, agent = srv.agent("Dana", f"dana-{uuid.uuid4().hex[:6]}@x.io")
        with httpx.Client(base_url=srv.url, timeout=10,
                          headers={"Authorization": f"Bearer {other.admin_key}"}) as ob:
            carol = ob.post("/v1/tokens", json={"sub": "carol", "role": "user"}).json()["token"]
        w = World(srv, srv.token("alice", name="Alice"), srv.token("bob"), agent, agent_id, carol, "", "", "")
        for attr, tok in (("conv_a", w.alice), ("conv_b", w.bob), ("conv_c", w.carol)):
            with w.client(tok) as c:
                setattr(w, attr, c.post("/v1/conversations", json={}).json()["conversation"]["id"])
        yield w
    finally:
        srv.stop()
        if url:
            asyncio.run(drop_pg_database(url))


def upload(w: World, token: str, conv: str, data: bytes, name: str = "file.bin",
           content_type: str | None = None) -> httpx.Response:
    with w.client(token) as c:
        files = {"file": (name, data, content_type)} if content_type else {"file": (name, data)}
        return c.post(f"/v1/conversations/{conv}/attachments", files=files)


def stored(w: World) -> tuple[int, int, int]:
    """(attachment rows, files in the data dir, messages): what a refused request must not change."""
    async def rows() -> tuple[int, int]:
        async with w.srv.app.state.db.session() as s:
            n = (await s.exec(select(func.count()).select_from(Attachment))).one()
            m = (await s.exec(select(func.count()).select_from(Message))).one()
        return int(n), int(m)

    n, m = w.srv.call(rows())
    root = w.srv.data_dir / "attachments"
    files = sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0
    return n, files, m


def send_rest(w: World, token: str, conv: str, ids: list[str], text: str = "see attached",
              cmid: str | None = None) -> httpx.Response:
    with w.client(token) as c:
        return c.post(f"/v1/conversations/{conv}/messages",
                      json={"client_msg_id": cmid or str(uuid.uuid4()), "text": text, "attachments": ids})


async def test_photo_is_sent_over_the_socket_and_the_agent_sees_a_clean_copy_and_thumbnail(w: World) -> None:
    photo = jpeg_with_exif()
    assert b"SpyCam" in photo
    r = upload(w, w.alice, w.conv_a, photo, "holiday.jpg", "image/jpeg")
    assert r.status_code == 201, r.text
    att = r.json()["attachment"]
    assert att["media_type"] == "image/jpeg" and att["name"] == "holiday.jpg"
    assert (att["width"], att["height"]) == (800, 600)
    assert len(att["id"]) == 32

    agent = await WsClient.connect(w.srv.ws_url, w.agent)
    await agent.send({"type": "subscribe", "conversation_id": w.conv_a, "ref": "s"})
    await agent.expect("subscribed", conversation_id=w.conv_a)
    user = await WsClient.connect(w.srv.ws_url, w.alice)
    cmid = str(uuid.uuid4())
    frame = {"type": "send", "conversation_id": w.conv_a, "client_msg_id": cmid, "text": "the error",
             "attachments": [att["id"]]}
    await user.send(frame)
    ack = await user.expect("ack", client_msg_id=cmid)
    got = await agent.expect("message", conversation_id=w.conv_a)
    assert got["message"]["attachments"] == [att]
    # the same frame again is the same message (idempotent send), not an "already used" error
    await user.send(frame)
    again = await user.expect("ack", client_msg_id=cmid)
    assert (again["message_id"], again["seq"]) == (ack["message_id"], ack["seq"])
    await user.close()
    await agent.close()

    with w.client(w.agent) as c:
        full = c.get(att["url"])
        thumb = c.get(att["thumbnail_url"])
        hist = c.get(f"/v1/conversations/{w.conv_a}/messages").json()["messages"]
    assert full.status_code == 200
    assert full.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in full.headers["content-security-policy"]
    assert full.headers["content-type"] == "image/jpeg"
    assert b"SpyCam" not in full.content and b"secret-firmware" not in full.content
    clean = Image.open(io.BytesIO(full.content))
    assert clean.size == (800, 600) and not clean.getexif()
    small = Image.open(io.BytesIO(thumb.content))
    assert max(small.size) <= 320 and thumb.headers["x-content-type-options"] == "nosniff"
    assert [m["attachments"] for m in hist if m["id"] == ack["message_id"]] == [[att]]


def test_a_pdf_is_sent_over_rest_and_downloads_as_an_attachment(w: World) -> None:
    r = upload(w, w.agent, w.conv_a, PDF, "invoice.pdf", "application/pdf")
    assert r.status_code == 201, r.text
    att = r.json()["attachment"]
    assert "thumbnail_url" not in att
    sent = send_rest(w, w.agent, w.conv_a, [att["id"]], text="")
    assert sent.status_code == 201, sent.text
    with w.client(w.alice) as c:
        got = c.get(att["url"])
        hist = c.get(f"/v1/conversations/{w.conv_a}/messages").json()["messages"]
    assert got.status_code == 200 and got.content == PDF
    assert got.headers["content-disposition"].startswith("attachment;")
    assert "invoice.pdf" in got.headers["content-disposition"]
    assert got.headers["x-content-type-options"] == "nosniff"
    assert [m["text"] for m in hist if m.get("attachments") == [att]] == [""]


@pytest.mark.parametrize(("case", "status", "code", "words"), [
    ("over the file limit", 413, "too_long", "limited to"),
    ("png bytes named .pdf", 415, "unsupported_media_type", "not the claimed application/pdf"),
    ("png bytes named .pdf, sent as octet-stream", 415, "unsupported_media_type", "name says application/pdf"),
    ("text claimed as image/png", 415, "unsupported_media_type", "not the claimed image/png"),
    ("a type not allowed", 415, "unsupported_media_type", "not accepted"),
    ("image bomb", 413, "too_long", "pixels"),
    ("../ in the name", 422, "validation_failed", "path separators"),
    ("an empty file", 422, "validation_failed", "empty"),
])
def test_bad_uploads_are_refused_and_store_nothing(w: World, case: str, status: int, code: str, words: str) -> None:
    name, data, ctype = {
        "over the file limit": ("big.txt", b"a" * (MAX_FILE + 1), "text/plain"),
        "png bytes named .pdf": ("report.pdf", png(), None),
        "png bytes named .pdf, sent as octet-stream": ("report.pdf", png(), "application/octet-stream"),
        "text claimed as image/png": ("shot.png", b"just some text, not an image", "image/png"),
        "a type not allowed": ("tool.exe", b"MZ\x90\x00" + b"\x00" * 200, None),
        "image bomb": ("bomb.png", png_bomb(), "image/png"),
        "../ in the name": ("../../etc/passwd.png", png(), "image/png"),
        "an empty file": ("empty.txt", b"", "text/plain"),
    }[case]
    before = stored(w)
    r = upload(w, w.alice, w.conv_a, data, name, ctype)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and words in err["detail"], err
    assert stored(w) == before


def test_attachments_of_another_conversation_or_tenant_or_person_are_refused(w: World) -> None:
    mine = upload(w, w.alice, w.conv_a, png(), "a.png").json()["attachment"]
    theirs = upload(w, w.carol, w.conv_c, png(), "c.png").json()["attachment"]
    before = stored(w)
    # bob cannot send alice's file in his conversation; alice cannot send carol's (other tenant)
    for token, conv, ids, status, code in [
        (w.bob, w.conv_b, [mine["id"]], 404, "not_found"),
        (w.alice, w.conv_a, [theirs["id"]], 404, "not_found"),
        (w.alice, w.conv_a, ["0" * 32], 404, "not_found"),
        (w.agent, w.conv_a, [mine["id"]], 403, "forbidden"),  # uploaded by someone else
        (w.alice, w.conv_a, [mine["id"], mine["id"]], 422, "validation_failed"),
    ]:
        r = send_rest(w, token, conv, ids)
        assert r.status_code == status, r.text
        assert r.json()["error"]["code"] == code
    assert stored(w) == before
    # nobody outside the conversation (or the tenant) can read it, and before it is sent only its uploader
    for token in (w.bob, w.carol, w.agent):
        with w.client(token) as c:
            assert c.get(mine["url"]).status_code == 404
            assert c.get(mine["thumbnail_url"]).status_code == 404
    with w.client(w.alice) as c:
        assert c.get(mine["url"]).status_code == 200
    # uploading into a conversation one does not belong to looks like a missing conversation
    r = upload(w, w.bob, w.conv_a, png(), "b.png")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = upload(w, w.carol, w.conv_a, png(), "b.png")
    assert r.status_code == 404
    assert stored(w) == before


def test_a_file_goes_in_one_message_only(w: World) -> None:
    att = upload(w, w.alice, w.conv_a, png(), "once.png").json()["attachment"]
    cmid = str(uuid.uuid4())
    first = send_rest(w, w.alice, w.conv_a, [att["id"]], cmid=cmid)
    assert first.status_code == 201
    before = stored(w)
    again = send_rest(w, w.alice, w.conv_a, [att["id"]])  # a new message with the same file
    assert again.status_code == 422 and "already in another message" in again.json()["error"]["detail"]
    other = upload(w, w.alice, w.conv_a, png(), "other.png").json()["attachment"]
    reused = send_rest(w, w.alice, w.conv_a, [other["id"]], cmid=cmid)  # the first key, other files
    assert reused.status_code == 409 and reused.json()["error"]["code"] == "idempotency_key_reused"
    retry = send_rest(w, w.alice, w.conv_a, [att["id"]], cmid=cmid)
    assert retry.json()["message_id"] == first.json()["message_id"] and retry.json()["duplicate"] is True
    after = stored(w)
    assert (after[0], after[2]) == (before[0] + 1, before[2])  # only the second upload's row
    with w.client(w.agent) as c:
        assert c.get(att["url"]).status_code == 200  # sent: the agent may read it now


@pytest.mark.parametrize("value", [True, "one-id", {"id": "x"}, [1, 2], ["x" * 65]])
def test_a_malformed_attachments_field_is_a_validation_error_not_a_server_error(w: World, value: object) -> None:
    before = stored(w)
    with w.client(w.alice) as c:
        r = c.post(f"/v1/conversations/{w.conv_a}/messages",
                   json={"text": "hi", "client_msg_id": str(uuid.uuid4()), "attachments": value})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "validation_failed" and error["field"].startswith("attachments"), error
    assert stored(w) == before


def test_admins_and_unauthenticated_callers_cannot_upload(w: World) -> None:
    with w.srv.admin() as c:
        r = c.post(f"/v1/conversations/{w.conv_a}/attachments", files={"file": ("a.png", png())})
    assert r.status_code == 403
    with httpx.Client(base_url=w.srv.url) as c:
        r = c.post(f"/v1/conversations/{w.conv_a}/attachments", files={"file": ("a.png", png())})
        assert r.status_code == 401
        assert c.get(f"/v1/attachments/{'0' * 32}").status_code == 401


def test_the_tenant_limit_counts_every_file(tmp_path: Path) -> None:
    with InProcServer(make_settings(tmp_path, attachment_max_tenant_bytes=25_000, **FAST)) as srv:
        srv.without_bot()
        tok = srv.token("quota-user")
        hdr: dict[str, Any] = {"Authorization": f"Bearer {tok}"}
        with httpx.Client(base_url=srv.url, headers=hdr, timeout=20) as c:
            conv = c.post("/v1/conversations", json={}).json()["conversation"]["id"]
            ok = c.post(f"/v1/conversations/{conv}/attachments", files={"file": ("a.txt", b"x" * 15_000)})
            assert ok.status_code == 201
            full = c.post(f"/v1/conversations/{conv}/attachments", files={"file": ("b.txt", b"y" * 15_000)})
            assert full.status_code == 413 and "in all" in full.json()["error"]["detail"]
            assert sum(1 for p in (tmp_path / "attachments").rglob("*") if p.is_file()) == 1


def test_a_body_far_over_the_limit_is_refused_while_it_streams(w: World) -> None:
    before = stored(w)
    r = upload(w, w.alice, w.conv_a, b"z" * (3 * MAX_FILE), "huge.txt", "text/plain")
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_long"
    assert stored(w) == before


def test_an_animated_gif_is_kept_as_its_first_frame_in_png(w: World) -> None:
    frames = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], comment=b"hidden note")
    assert b"hidden note" in buf.getvalue()
    r = upload(w, w.alice, w.conv_a, buf.getvalue(), "anim.gif", "image/gif")
    assert r.status_code == 201, r.text
    att = r.json()["attachment"]
    assert (att["media_type"], att["name"]) == ("image/png", "anim.png")
    with w.client(w.alice) as c:
        got = c.get(att["url"]).content
    assert got.startswith(b"\x89PNG") and b"hidden note" not in got


async def test_a_socket_send_with_a_foreign_attachment_gets_an_error_and_stores_nothing(w: World) -> None:
    theirs = upload(w, w.carol, w.conv_c, png(), "c.png").json()["attachment"]
    before = stored(w)
    user = await WsClient.connect(w.srv.ws_url, w.alice)
    cmid = str(uuid.uuid4())
    await user.send({"type": "send", "conversation_id": w.conv_a, "client_msg_id": cmid, "text": "look",
                     "attachments": [theirs["id"]]})
    err = await user.expect("error", client_msg_id=cmid)
    assert err["code"] == "not_found" and theirs["id"] in err["detail"]
    await user.send({"type": "send", "conversation_id": w.conv_a, "client_msg_id": str(uuid.uuid4()),
                     "text": "x", "attachments": "not-a-list"})
    bad = await user.expect("error")
    assert bad["code"] in ("validation_failed", "bad_frame")
    await user.close()
    assert stored(w) == before


def test_upload_send_and_download_on_socketify(tmp_path: Path) -> None:
    """The default server: multipart in, a streamed file with its length out."""
    from tests.support.live import LiveServer, free_port

    srv = LiveServer("socketify", free_port(), tmp_path, {}).start(timeout=60)
    try:
        srv.without_bot()
        photo = jpeg_with_exif(1200, 900)
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.token('sock-user')}"},
                          timeout=20) as c:
            conv = c.post("/v1/conversations", json={}).json()["conversation"]["id"]
            r = c.post(f"/v1/conversations/{conv}/attachments", files={"file": ("big.jpg", photo, "image/jpeg")})
            assert r.status_code == 201, r.text
            att = r.json()["attachment"]
            sent = c.post(f"/v1/conversations/{conv}/messages",
                          json={"client_msg_id": str(uuid.uuid4()), "text": "", "attachments": [att["id"]]})
            assert sent.status_code == 201, sent.text
            got = c.get(att["url"])
            # (socketify sends a streamed body chunked, without the Content-Length uvicorn keeps)
            assert got.status_code == 200 and len(got.content) == att["size"]
            assert got.headers["x-content-type-options"] == "nosniff"
            assert Image.open(io.BytesIO(got.content)).size == (1200, 900)
            assert b"SpyCam" not in got.content
            bomb = c.post(f"/v1/conversations/{conv}/attachments", files={"file": ("b.png", png_bomb(), "image/png")})
            assert bomb.status_code == 413
    finally:
        srv.stop()


def test_an_unsent_upload_can_be_deleted_by_its_uploader_only(w: World) -> None:
    before = stored(w)
    att = upload(w, w.alice, w.conv_a, png(), "oops.png").json()["attachment"]
    with w.client(w.agent) as c:
        assert c.delete(att["url"]).status_code == 404  # not sent: the agent does not even see it
    with w.client(w.alice) as c:
        assert c.delete(att["url"]).status_code == 204
        assert c.get(att["url"]).status_code == 404
    assert stored(w) == before
    kept = upload(w, w.alice, w.conv_a, png(), "kept.png").json()["attachment"]
    assert send_rest(w, w.alice, w.conv_a, [kept["id"]]).status_code == 201
    with w.client(w.alice) as c:
        r = c.delete(kept["url"])
        assert r.status_code == 422 and "stays with its message" in r.json()["error"]["detail"]
        assert c.get(kept["url"]).status_code == 200
