"""Process helpers for the chat benchmark: start servers pinned to one core, read a process's
RSS and CPU time from /proc, and always stop what was started."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Parley's protective limits are sized for people, not for a load generator.
PARLEY_LOAD_ENV = {
    "PARLEY_RATE_PER_CONNECTION": "1000000",
    "PARLEY_BURST_PER_CONNECTION": "1000000",
    "PARLEY_RATE_PER_USER": "1000000",
    "PARLEY_BURST_PER_USER": "1000000",
    "PARLEY_RATE_PER_TENANT": "1000000",
    "PARLEY_BURST_PER_TENANT": "1000000",
    "PARLEY_RATE_REPLAY_PER_USER": "1000000",
    "PARLEY_BURST_REPLAY_PER_USER": "1000000",
    "PARLEY_MAX_PENDING_HANDSHAKES_PER_IP": "100000",
    "PARLEY_MAX_CONNECTIONS_PER_USER": "1000",
    # The demo tenant is needed for its admin key, not its help-centre knowledge base.
    "PARLEY_DEMO_KNOWLEDGE": "false",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_nofile() -> int:
    """Raise the soft open-files limit to the hard one (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def core_plan() -> tuple[int | None, int | None]:
    """(server core, load-generator core), or (None, None) with fewer than two cores."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[-1], cpus[0]


def pinned(core: int | None) -> list[str]:
    if core is None or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(core)]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine() -> dict[str, object]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {"nproc": os.cpu_count(), "cpu_model": model or platform.processor(), "mem_gib": round(mem_kib / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version()}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    data_dir: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, n: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-n:]
        return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(5)


def _wait_ready(srv: Server, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not srv.alive():
            raise RuntimeError(f"{srv.name} exited with {srv.proc.returncode}:\n{srv.log_tail()}")
        if callable(check) and check():
            return
        time.sleep(0.1)
    srv.stop()
    raise RuntimeError(f"{srv.name} did not become ready in {timeout:.0f}s:\n{srv.log_tail()}")


def start_parley(kind: str, data_dir: Path, core: int | None, env_extra: dict[str, str] | None = None,
                 timeout: float = 60.0) -> Server:
    """``parley serve --server KIND`` in a subprocess, pinned to ``core``."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **PARLEY_LOAD_ENV, **(env_extra or {}), "PYTHONUNBUFFERED": "1"}
    log_path = data_dir / f"server-{kind}.log"
    cmd = [*pinned(core), PY, "-m", "server.cli", "serve", "--server", kind, "--port", str(port),
           "--host", "127.0.0.1", "--data-dir", str(data_dir)]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    srv = Server(kind, port, proc, log_path, data_dir, env_extra or {})

    def ready() -> bool:
        try:
            ok = httpx.get(srv.base_url + "/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False
        return ok and (data_dir / "demo-admin-key.txt").exists()

    try:
        _wait_ready(srv, ready, timeout)
    except BaseException:  # broad: cleanup, then re-raised
        srv.stop()
        raise
    return srv


def start_baseline(work_dir: Path, core: int | None, timeout: float = 20.0) -> Server:
    port = free_port()
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / "server-baseline.log"
    cmd = [*pinned(core), PY, str(ROOT / "bench" / "baseline_ws.py"), "--port", str(port)]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    srv = Server("baseline", port, proc, log_path, work_dir)

    def ready() -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        _wait_ready(srv, ready, timeout)
    except BaseException:  # broad: cleanup, then re-raised
        srv.stop()
        raise
    return srv


def runq_wait_s(pid: int) -> float:
    """Seconds the process's main thread has spent runnable but waiting for a CPU."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def calibrate() -> float:
    """Microseconds for ``sum(range(1000))`` (best of 5): a rough single-core speed index, to compare
    runs on machines that may be slow or busy (about 8-10 µs on an idle modern core)."""
    import timeit

    return round(min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6, 1)
