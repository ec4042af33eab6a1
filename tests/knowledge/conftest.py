from pathlib import Path

import pytest

from knowledge.embeddings import HashEmbedder, OnnxMiniLM
from knowledge.service import KnowledgeService
from knowledge.settings import KnowledgeSettings
from knowledge.store import ChromaStore


@pytest.fixture(scope="session")
def onnx() -> OnnxMiniLM:
    return OnnxMiniLM()


@pytest.fixture
def settings() -> KnowledgeSettings:
    return KnowledgeSettings()


@pytest.fixture
def hash_service(tmp_path: Path) -> KnowledgeService:
    return KnowledgeService(ChromaStore.persistent(tmp_path / "chroma"), HashEmbedder(), KnowledgeSettings())


@pytest.fixture
def onnx_service(tmp_path: Path, onnx: OnnxMiniLM) -> KnowledgeService:
    return KnowledgeService(ChromaStore.persistent(tmp_path / "chroma"), onnx, KnowledgeSettings())


@pytest.fixture(scope="session")
def demo_service(tmp_path_factory: pytest.TempPathFactory, onnx: OnnxMiniLM) -> KnowledgeService:
    from knowledge.demo import load_demo

    service = KnowledgeService(
        ChromaStore.persistent(tmp_path_factory.mktemp("demo") / "chroma"), onnx, KnowledgeSettings()
    )
    load_demo(service, "demo")
    return service
