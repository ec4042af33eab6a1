"""Knowledge bases over REST: upload → queued → processing → ready, search with citations,
re-upload, delete, and bad uploads that end as a clear error while the server keeps going."""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.knowledge.samples import make_pdf, make_zip_bomb_docx
from tests.support.inproc import InProcServer, make_settings


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcServer]:
    data: Path = tmp_path_factory.mktemp("kbroutes")
    server = InProcServer(make_settings(data, max_upload_bytes=2 * 1024 * 1024)).start()
    yield server
    server.stop()


def _wait(c: httpx.Client, kb: str, doc: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d: dict[str, Any] = c.get(f"/v1/knowledge-bases/{kb}/documents/{doc}").json()["document"]
        if d["status"] in ("ready", "failed"):
            return d
        time.sleep(0.1)
    raise AssertionError(f"document {doc} still {d['status']}")


def test_upload_search_replace_delete(srv: InProcServer) -> None:
    with srv.admin() as c:
        kb = c.post("/v1/knowledge-bases", json={"name": "Help"}).json()["id"]
        r = c.post(f"/v1/knowledge-bases/{kb}/documents",
                   files={"file": ("returns.md", b"# Returns\n\nReturn code RX-4471 gives a full refund in 30 days.\n",
                                   "text/markdown")})
        assert r.status_code == 202
        doc = r.json()["document"]
        assert doc["status"] == "queued"
        done = _wait(c, kb, doc["id"])
        assert (done["status"], done["chunk_count"] > 0) == ("ready", True)
        hits = c.get(f"/v1/knowledge-bases/{kb}/search", params={"q": "RX-4471"}).json()["hits"]
        assert hits[0]["document_id"] == doc["id"]
        assert "RX-4471" in hits[0]["text"]

        pdf = c.post(f"/v1/knowledge-bases/{kb}/documents",
                     files={"file": ("warranty.pdf", make_pdf(["Warranty: two years on every grinder."]),
                                     "application/pdf")}).json()["document"]
        assert _wait(c, kb, pdf["id"])["status"] == "ready"
        faq = c.post(f"/v1/knowledge-bases/{kb}/documents",
                     json={"faq": [{"question": "Do you ship to Mars?", "answer": "Not yet, sorry."}]}).json()
        assert _wait(c, kb, faq["document"]["id"])["status"] == "ready"
        text = c.post(f"/v1/knowledge-bases/{kb}/documents",
                      json={"title": "Hours", "text": "We answer chats from 8:00 to 20:00."}).json()
        assert _wait(c, kb, text["document"]["id"])["status"] == "ready"

        r = c.delete(f"/v1/knowledge-bases/{kb}/documents/{doc['id']}")
        assert r.status_code == 200
        assert r.json()["chunks_removed"] > 0
        hits = c.get(f"/v1/knowledge-bases/{kb}/search", params={"q": "RX-4471 refund"}).json()["hits"]
        assert doc["id"] not in {h["document_id"] for h in hits}
        assert c.get(f"/v1/knowledge-bases/{kb}/documents/{doc['id']}").status_code == 404


@pytest.mark.parametrize(
    ("files", "body", "want"),
    [
        ({"file": ("bomb.docx", make_zip_bomb_docx(200 * 1024 * 1024), "application/octet-stream")}, None, "failed"),
        ({"file": ("x.exe", b"MZ\x90\x00", "application/octet-stream")}, None, "failed"),
        (None, {"url": "http://127.0.0.1:9/admin"}, "failed"),
        (None, {"url": "http://169.254.169.254/latest/meta-data"}, "failed"),
        (None, {"url": "file:///etc/passwd"}, 422),
        (None, {"faq": [{"question": "q"}]}, 422),
        (None, {"text": "no title"}, 422),
        (None, {"nothing": 1}, 422),
    ],
)
def test_bad_documents_get_clear_errors(srv: InProcServer, files: Any, body: Any, want: Any) -> None:
    with srv.admin() as c:
        kb = c.post("/v1/knowledge-bases", json={"name": "Bad"}).json()["id"]
        r = c.post(f"/v1/knowledge-bases/{kb}/documents", files=files, json=body)
        if isinstance(want, int):
            assert r.status_code == want, r.text
            assert r.json()["error"]["code"] == "validation_failed"
            return
        assert r.status_code == 202, r.text
        d = _wait(c, kb, r.json()["document"]["id"])
        assert d["status"] == want
        assert d["error"]
        # The worker survives: a good document right after is indexed.
        ok = c.post(f"/v1/knowledge-bases/{kb}/documents", json={"title": "t", "text": "still working"}).json()
        assert _wait(c, kb, ok["document"]["id"])["status"] == "ready"


def test_oversized_upload_is_refused_before_it_is_read(srv: InProcServer) -> None:
    with srv.admin() as c:
        kb = c.post("/v1/knowledge-bases", json={"name": "Big"}).json()["id"]
        r = c.post(f"/v1/knowledge-bases/{kb}/documents",
                   files={"file": ("big.txt", b"a" * (3 * 1024 * 1024), "text/plain")})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_long"
