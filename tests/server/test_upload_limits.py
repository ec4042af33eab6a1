"""Document uploads: a chunked body (no ``Content-Length``) is refused as soon as it crosses the
limit, not after the server has taken all of it; raw uploads never outlive their document."""

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.inproc import InProcServer, make_settings

LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcServer]:
    with InProcServer(make_settings(tmp_path_factory.mktemp("uploads"), max_upload_bytes=LIMIT,
                                    max_request_bytes=LIMIT)) as server:
        yield server


def _kb(srv: InProcServer) -> str:
    with srv.admin() as c:
        return str(c.post("/v1/knowledge-bases", json={"name": "Uploads"}).json()["id"])


def _chunked_upload(srv: InProcServer, path: str, content_type: str, head: bytes, total: int,
                    chunk: int = 64 * 1024) -> tuple[int, bytes]:
    """Send a chunked body of ``total`` bytes until the server answers; returns the bytes the
    server took before its answer and the answer."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    s.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {srv.admin_key}\r\n"
               f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
    sent, answer, pending = 0, b"", b""
    block = head + b"a" * (chunk - len(head))
    s.setblocking(False)
    deadline = time.monotonic() + 60
    try:
        while (sent < total or pending) and time.monotonic() < deadline:
            try:
                answer += s.recv(65536)
                if answer:
                    break
            except BlockingIOError:
                pass
            if not pending:
                pending = f"{len(block):x}\r\n".encode() + block + b"\r\n"
                block = b"a" * chunk
            try:
                n = s.send(pending)
            except BlockingIOError:
                time.sleep(0.01)  # the server stopped reading: wait for its answer
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            pending = pending[n:]
            sent += n
        s.setblocking(True)
        s.settimeout(10)
        while b"}}" not in answer:  # the end of the error body
            more = s.recv(65536)
            if not more:
                break
            answer += more
    finally:
        s.close()
    return sent, answer


@pytest.mark.parametrize("kind", ["multipart", "json"])
def test_a_chunked_body_over_the_limit_is_refused_while_it_streams(srv: InProcServer, kind: str) -> None:
    kb = _kb(srv)
    total = 64 * 1024 * 1024
    if kind == "multipart":
        head = (b"--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.txt\"\r\n"
                b"Content-Type: text/plain\r\n\r\n")
        ctype = "multipart/form-data; boundary=XYZ"
    else:
        head, ctype = b'{"title": "t", "text": "', "application/json"
    sent, answer = _chunked_upload(srv, f"/v1/knowledge-bases/{kb}/documents", ctype, head, total)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b'"too_long"' in answer
    # Refused while the body was still coming: the server took the limit and what the socket
    # buffers hold, not the whole body (before the fix it read all 64 MiB, then refused).
    assert sent < 16 * 1024 * 1024, sent
    with srv.admin() as c:
        assert c.get(f"/v1/knowledge-bases/{kb}/documents").json()["documents"] == []


def test_a_chunked_upload_under_the_limit_is_taken(srv: InProcServer) -> None:
    kb = _kb(srv)

    def body() -> Iterator[bytes]:
        yield b"--XYZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nignored\r\n"
        yield b"--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"../../hours.md\"\r\n"
        yield b"Content-Type: text/markdown\r\n\r\n# Hours\n\nOpen 8 to 20.\n\r\n--XYZ--\r\n"

    with srv.admin() as c:
        r = c.post(f"/v1/knowledge-bases/{kb}/documents", content=body(),
                   headers={"Content-Type": "multipart/form-data; boundary=XYZ"})
        assert r.status_code == 202, r.text
        doc = r.json()["document"]
        assert (doc["title"], doc["source"]) == ("hours", "upload:hours.md")
        assert _wait(c, kb, doc["id"])["status"] == "ready"


def _wait(c: httpx.Client, kb: str, doc: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d: dict[str, Any] = c.get(f"/v1/knowledge-bases/{kb}/documents/{doc}").json()["document"]
        if d["status"] in ("ready", "failed"):
            return d
        time.sleep(0.1)
    raise AssertionError(f"document {doc} still {d['status']}")


def _uploads(srv: InProcServer) -> list[Path]:
    folder = srv.data_dir / "uploads"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_the_raw_upload_of_a_failed_document_is_removed(srv: InProcServer) -> None:
    kb = _kb(srv)
    with srv.admin() as c:
        r = c.post(f"/v1/knowledge-bases/{kb}/documents",
                   files={"file": ("x.exe", b"MZ\x90\x00" * 100, "application/octet-stream")})
        doc = r.json()["document"]["id"]
        assert _wait(c, kb, doc)["status"] == "failed"
    assert [p.name for p in _uploads(srv) if p.name.startswith(doc)] == []


def test_deleting_a_waiting_document_removes_its_raw_upload(tmp_path: Path) -> None:
    with InProcServer(make_settings(tmp_path)) as srv:
        async def stop_ingestion() -> None:
            for task in srv.app.state.background:
                if task.get_name() == "parley-ingest":
                    task.cancel()
            await asyncio.sleep(0)

        srv.call(stop_ingestion())
        kb = _kb(srv)
        with srv.admin() as c:
            doc = c.post(f"/v1/knowledge-bases/{kb}/documents",
                         files={"file": ("a.md", b"# A\n\nsome text\n", "text/markdown")}).json()["document"]["id"]
            assert [p.name for p in _uploads(srv)] == [f"{doc}.bin"]
            assert c.delete(f"/v1/knowledge-bases/{kb}/documents/{doc}").status_code == 200
        assert _uploads(srv) == []
