"""Shared fixtures: no test may reach a real network endpoint (the guard fails the test at
teardown even if the code under test swallowed the error)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bots.testing import forbid_real_models


@pytest.fixture(autouse=True)
def _no_real_network() -> Iterator[list[str]]:
    with forbid_real_models() as attempts:
        yield attempts


@pytest.fixture(autouse=True, scope="session")
def _learned_handoff_model_loaded() -> None:
    # Loaded once before any pipeline runs, so that every test sees the same policy (the pipeline
    # skips the learned layer while the model is still loading) and no load competes with a
    # test's deadline.
    from bots.handoff_model import shipped_scorer

    shipped_scorer()
