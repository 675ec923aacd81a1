"""Shared test configuration: every test under ``tests/integration/`` is marked ``integration``
(``-m "not integration"`` runs the fast unit tests alone), and the specs directory, where test
vectors and contracts live, is a fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.node_harness import REPO

INTEGRATION = Path(__file__).resolve().parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def specs_dir() -> Path:
    """``specs/``: the contracts and vectors tests read (never literals in tests)."""
    return REPO / "specs"
