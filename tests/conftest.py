"""Fixtures shared across test modules."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.installed import Installed, install

# Property tests (sigv4, the fuzzers) run the same examples on every `make test`, in CI or not:
# a red run is reproducible and a green one is not luck. FUZZ_RANDOM=1 explores (hypothesis
# prints the failing example's blob to replay it).
settings.register_profile(
    "forkstage", derandomize="FUZZ_RANDOM" not in os.environ, database=None, print_blob=True
)
settings.load_profile("forkstage")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI a skip is a failure (a missing prerequisite must not turn CI green without
    running anything), except in the opt-in cloud suite (marker ``cloud``)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if "CI" not in os.environ or not report.skipped or item.get_closest_marker("cloud"):
        return
    if hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped under CI, where every test must run: {reason}"


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """forkstage's wheel in a venv outside the checkout, and `forkstage init infra --name shop`
    in a temporary git repository holding its own backend/ and cdk/ (tests/installed.py).

    Shared by the whole run: tests that deploy on it must leave no stage behind."""
    done = install(tmp_path_factory.mktemp("installed"))
    yield done
    done.forkstage("local", "down", timeout=60)
