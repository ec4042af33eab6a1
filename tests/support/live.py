"""Live servers for end-to-end tests: ``parley serve`` in a subprocess on a free loopback port,
on socketify or uvicorn, with its own data dir and database."""

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RestHelpers:
    """Addresses and REST helpers shared by the subprocess and the in-process servers."""

    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    @property
    def admin_key(self) -> str:
        return (self.data_dir / "demo-admin-key.txt").read_text().strip()

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=10)

    def token(self, sub: str, role: str = "user", name: str | None = None) -> str:
        with self.admin() as c:
            r = c.post("/v1/tokens", json={"sub": sub, "role": role, **({"name": name} if name else {})})
            r.raise_for_status()
            return str(r.json()["token"])

    def without_bot(self) -> Self:
        """Conversations start with no AI agent (status ``queued``): protocol tests then see only
        the messages they send."""
        with self.admin() as c:
            for bot in c.get("/v1/bots").json()["bots"]:
                if bot["is_default"]:
                    c.patch(f"/v1/bots/{bot['id']}", json={"is_default": False}).raise_for_status()
        return self

    def agent(self, name: str, email: str, password: str = "correct horse battery") -> tuple[str, str]:
        """Create an agent; returns (agent_id, token)."""
        with self.admin() as c:
            r = c.post("/v1/agents", json={"name": name, "email": email, "password": password})
            r.raise_for_status()
            agent_id = str(r.json()["id"])
        return agent_id, self.token(agent_id, role="agent", name=name)


@dataclass
class LiveServer(RestHelpers):
    kind: str
    port: int
    data_dir: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir / f"server-{self.port}.log"

    def start(self, timeout: float = 90.0) -> "LiveServer":
        # A cold start imports the AI and knowledge stack: 20-40 s on a loaded 2-core machine.
        env = {**os.environ, "PARLEY_DEMO_KNOWLEDGE": "false", **self.env, "PARLEY_DATA_DIR": str(self.data_dir),
               "PARLEY_PORT": str(self.port),
               "PARLEY_HOST": "127.0.0.1", "PARLEY_SERVER": self.kind}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The child holds its own copy of the descriptor: ours is closed at once.
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "server.cli", "serve"], cwd=ROOT, env=env,
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2.0).status_code == 200:  # slow on a loaded machine
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            self.wait(15)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
