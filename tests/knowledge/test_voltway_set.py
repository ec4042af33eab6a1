"""The Voltway held-out set (and the handoff halves beside it) still validates with the shared
validator."""

import pytest

from knowledge.eval.voltway import validate


def test_voltway_set_validates(capsys: pytest.CaptureFixture[str]) -> None:
    code = validate.main()
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.rstrip().endswith("OK")
