"""Issue 9: two app instances on one PostgreSQL and one real Chroma server (``chroma run``). A
document ingested through node A is found by keyword on node B without a restart, and a
document deleted through A is no longer found on B (each node keeps its own keyword index)."""

import asyncio
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import create_pg_database, drop_pg_database
from tests.knowledge.test_shared_server import chroma_port  # noqa: F401  (the real Chroma server)
from tests.support.inproc import InProcServer, make_settings

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


class Nodes:
    def __init__(self, a: InProcServer, b: InProcServer) -> None:
        self.a, self.b = a, b


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory, chroma_port: int) -> Iterator[Nodes]:  # noqa: F811
    url = asyncio.run(create_pg_database())
    dir_a: Path = tmp_path_factory.mktemp("kb-node-a")
    dir_b: Path = tmp_path_factory.mktemp("kb-node-b")
    chroma = f"http://127.0.0.1:{chroma_port}"
    a = InProcServer(make_settings(dir_a, url, chroma_url=chroma))
    b = InProcServer(make_settings(dir_b, url, chroma_url=chroma))
    try:
        a.start(timeout=120)
        shutil.copy(dir_a / "demo-admin-key.txt", dir_b / "demo-admin-key.txt")
        shutil.copy(dir_a / "secret.key", dir_b / "secret.key")
        b.start(timeout=120)
        yield Nodes(a, b)
    finally:
        b.stop()
        a.stop()
        asyncio.run(drop_pg_database(url))


def _ready(c: httpx.Client, kb: str, doc: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        status = c.get(f"/v1/knowledge-bases/{kb}/documents/{doc}").json()["document"]["status"]
        if status in ("ready", "failed"):
            assert status == "ready"
            return
        time.sleep(0.2)
    raise AssertionError(f"document {doc} not ingested within 90 s")


def _documents_found(c: httpx.Client, kb: str, query: str) -> set[str]:
    r = c.get(f"/v1/knowledge-bases/{kb}/search", params={"q": query})
    assert r.status_code == 200, r.text
    hits: list[dict[str, Any]] = r.json()["hits"]
    return {h["document_id"] for h in hits}


def _until(check: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.2)


def test_a_document_ingested_on_one_node_is_found_by_keyword_on_the_other(nodes: Nodes) -> None:
    code = f"ZQ-{uuid.uuid4().hex[:6].upper()}"
    with nodes.a.admin() as a, nodes.b.admin() as b:
        kb = a.post("/v1/knowledge-bases", json={"name": f"Shared {code}"}).json()["id"]
        assert _documents_found(b, kb, code) == set()  # node B has built its index of the empty KB
        doc = a.post(f"/v1/knowledge-bases/{kb}/documents",
                     json={"title": "Error codes", "text": f"Error {code} means the filter needs replacing."}
                     ).json()["document"]["id"]
        _ready(a, kb, doc)
        _until(lambda: doc in _documents_found(b, kb, code), "node B finds the new document by its code")
        assert a.delete(f"/v1/knowledge-bases/{kb}/documents/{doc}").status_code == 200
        _until(lambda: doc not in _documents_found(b, kb, code), "node B no longer finds the deleted document")
