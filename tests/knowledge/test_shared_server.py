"""Several nodes sharing one Chroma server (issue 9): a document ingested, replaced or deleted
through one node is found (or no longer found) by the others without a restart.

Runs against a real ``chroma run`` server started here on a free loopback port.
"""

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from knowledge.documents import ParsedDocument, Section
from knowledge.embeddings import HashEmbedder
from knowledge.service import KnowledgeService
from knowledge.settings import KnowledgeSettings
from knowledge.store import ChromaStore


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def chroma_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    binary = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    if not Path(binary).exists():
        pytest.skip("the `chroma` command of the chromadb package is not installed")
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    log = (data / "server.log").open("wb")
    process = subprocess.Popen(
        [binary, "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                tail = (data / "server.log").read_text()[-500:]
                pytest.skip(f"`chroma run` exited with {process.returncode}: {tail}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.skip("`chroma run` did not answer its heartbeat within 60 s")
            time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _node(port: int) -> KnowledgeService:
    # Each node has its own client and its own in-memory copy, as separate processes would.
    settings = KnowledgeSettings(store_check_seconds=0.0)
    return KnowledgeService(ChromaStore.http("127.0.0.1", port), HashEmbedder(), settings)


def _doc(title: str, text: str) -> ParsedDocument:
    return ParsedDocument(title=title, source=f"{title}.md", sections=[Section((title,), text)])


def _found(node: KnowledgeService, query: str) -> list[str]:
    return [h.document_id for h in node.search("shared", query)]


def test_a_document_changed_on_one_node_is_seen_by_keyword_on_another(chroma_port: int) -> None:
    first, second = _node(chroma_port), _node(chroma_port)
    first.create_kb("shared")
    first.ingest("shared", "codes", _doc("Codes", "Error E7781 means the pump is dry."))
    assert _found(second, "E7781") == ["codes"]  # the second node loads its copy here

    first.ingest("shared", "parts", _doc("Parts", "The descaler cartridge is part QX-4410."))
    assert _found(second, "QX-4410") == ["parts"]

    first.ingest("shared", "codes", _doc("Codes", "Error E9902 means the boiler is cold."))
    assert _found(second, "E9902") == ["codes"]
    assert _found(second, "E7781") == []

    first.delete_document("shared", "parts")
    assert _found(second, "QX-4410") == []

    # And the other way round: what the second node writes, the first finds.
    second.ingest("shared", "milk", _doc("Milk", "The milk frother MF-300 needs rinsing daily."))
    assert _found(first, "MF-300") == ["milk"]
    assert second.chunk_count("shared") == first.chunk_count("shared") == 2
