"""The layers of pyproject.toml's import-linter contracts hold, and a violation breaks the check.

`make check` (and so `.ci/run`) runs `lint-imports`; these tests show it passes on the code as it
is and fails when a lower layer imports a higher one."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _copy(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for package in ("server", "bots", "knowledge"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("static", "data", "*.npz"))
    return tmp_path


def test_the_code_keeps_every_contract() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "contract"),
    [
        ("server/core/wire.py", "import server.chat.service", "server layers"),
        ("server/chat/service.py", "import server.realtime.gateway", "server layers"),
        ("server/handoff/router.py", "import server.realtime.gateway", "server layers"),
        ("knowledge/chunking.py", "import server.core.settings", "bots and knowledge never import server"),
        ("bots/text.py", "import knowledge.chunking", "bots and knowledge are independent of each other"),
    ],
)
def test_an_import_against_the_layers_breaks_the_check(
    tmp_path: Path, module: str, bad_import: str, contract: str
) -> None:
    root = _copy(tmp_path)
    target = root / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{bad_import}  # noqa\n", encoding="utf-8")
    result = _lint(root)
    assert result.returncode != 0
    assert f"{contract} BROKEN" in result.stdout, result.stdout
