"""Fixtures shared across test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.installed import Installed, install


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """forkstage's wheel in a venv outside the checkout, and `forkstage init infra --name shop`
    in a temporary git repository holding its own backend/ and cdk/ (tests/installed.py).

    Shared by the whole run: tests that deploy on it must leave no stage behind."""
    done = install(tmp_path_factory.mktemp("installed"))
    yield done
    done.forkstage("local", "down", timeout=60)
