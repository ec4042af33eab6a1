"""Settings that tell the truth: every field of ``Settings`` (and of its ``push`` part) is read by
server code, has a safe default, and README's settings reference lists exactly these names with
these defaults. Regenerate the README block with ``python -m tests.server.test_settings``."""

import re
from pathlib import Path
from typing import Any

import pytest

from server.core.settings import PushSettings, Settings

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"

#: Fields read outside ``server/`` (by a dependency the server hands them to), with where.
READ_ELSEWHERE: dict[str, str] = {}


def _server_source() -> str:
    return "\n".join(p.read_text() for p in sorted((ROOT / "server").rglob("*.py"))
                     if "migrations/versions" not in p.as_posix())


def _fields() -> list[tuple[str, str, Any]]:
    """(env variable, field name, default) of every setting, push ones as PARLEY_PUSH__<NAME>."""
    out: list[tuple[str, str, Any]] = []
    for name, info in Settings.model_fields.items():
        if name == "push":
            continue
        out.append((f"PARLEY_{name.upper()}", name, info.get_default(call_default_factory=True)))
    for name, info in PushSettings.model_fields.items():
        out.append((f"PARLEY_PUSH__{name.upper()}", name, info.get_default(call_default_factory=True)))
    return out


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    if isinstance(value, Path):
        return str(value)
    return str(value)


def reference() -> str:
    rows = [BEGIN, "| variable | default |", "| --- | --- |"]
    rows += [f"| `{env}` | `{_show(default)}` |" for env, _name, default in _fields()]
    rows.append(END)
    return "\n".join(rows)


@pytest.mark.parametrize(("env", "name"), [(env, name) for env, name, _ in _fields()])
def test_every_setting_is_read_by_the_server(env: str, name: str) -> None:
    if name in READ_ELSEWHERE:
        return
    reads = re.findall(rf"\.{re.escape(name)}\b", _server_source())
    assert reads, f"{env} ({name}) is read nowhere in server/: wire it or delete it"


def test_every_setting_has_a_default_and_settings_build_from_defaults_alone() -> None:
    for model in (Settings, PushSettings):
        missing = [n for n, f in model.model_fields.items() if f.is_required()]
        assert missing == [], missing
    assert isinstance(Settings().push, PushSettings)


def test_push_limits_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_PUSH__MAX_ATTEMPTS", "3")
    monkeypatch.setenv("PARLEY_PUSH__EGRESS_HOSTS", '["push.example.com"]')
    s = Settings()
    assert (s.push.max_attempts, s.push.egress_hosts) == (3, ("push.example.com",))
    monkeypatch.setenv("PARLEY_PUSH__NO_SUCH_LIMIT", "1")
    with pytest.raises(ValueError, match="no_such_limit"):
        Settings()


def test_readme_lists_every_setting_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    assert BEGIN in readme and END in readme, "README has no settings reference block"
    block = readme[readme.index(BEGIN):readme.index(END) + len(END)]
    assert block == reference(), "README's settings reference is stale: python -m tests.server.test_settings"


def test_every_variable_named_in_the_readme_exists() -> None:
    # PARLEY_PUSH is the push field itself (PARLEY_PUSH__<NAME>); PARLEY_SCREENSHOTS the browser tests' switch
    known = {env for env, _n, _d in _fields()} | {"PARLEY_PUSH", "PARLEY_SCREENSHOTS"}
    named = set(re.findall(r"PARLEY_[A-Z0-9_]*[A-Z0-9]", (ROOT / "README.md").read_text()))
    prefixes = {n for n in named if n.endswith(("_", "PARLEY_PUSH__TEMPLATE"))}
    assert named - known - prefixes == set()


def write_readme() -> None:
    """Put the current reference block into README.md in place of the old one."""
    path = ROOT / "README.md"
    readme = path.read_text()
    path.write_text(readme[:readme.index(BEGIN)] + reference() + readme[readme.index(END) + len(END):])


if __name__ == "__main__":  # python -m tests.server.test_settings: rewrites README's settings block
    write_readme()
