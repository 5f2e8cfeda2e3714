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


# The heaviest files first (seconds of one file on a busy 2-core machine, measured with
# `pytest --durations`): pytest-xdist's workers take whole files in this order
# (`--dist loadfile --no-loadscope-reorder`), so the long ones start at once and the many short
# ones fill the end. xdist's default order (most tests first) left a 2-minute file for last.
HEAVY_FILES = (
    "tests/test_interrupts.py",  # 235
    "tests/test_cdktn.py",  # 170
    "tests/test_wrapper_e2e.py",  # 160
    "tests/test_cdktf_path.py",  # 155
    "tests/test_local_stack.py",  # 140
    "tests/test_local_many_prs.py",  # 100
    "tests/test_schema_diff.py",  # 95
    "tests/test_outputs.py",  # 85
    "tests/test_local_story.py",  # 80
    "tests/test_own_repo.py",  # 67
    "tests/test_local_providers.py",  # 65
    "tests/test_upgrade.py",  # 64
    "tests/test_standin_behaviour.py",  # 62
    "tests/test_rehearse_github.py",  # 58
    "tests/test_rehearse_gitlab.py",  # 58
    "tests/test_refusals.py",  # 57
    "tests/test_migrations.py",  # 40
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Heavy files first, each file's tests kept in their order (a stable sort)."""
    rank = {path: index for index, path in enumerate(HEAVY_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """forkstage's wheel in a venv outside the checkout, and `forkstage init infra --name shop`
    in a temporary git repository holding its own backend/ and cdk/ (tests/installed.py).

    Shared by the whole run: tests that deploy on it must leave no stage behind."""
    done = install(tmp_path_factory.mktemp("installed"))
    yield done
    done.forkstage("local", "down", timeout=60)
