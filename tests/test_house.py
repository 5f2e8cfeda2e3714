"""The house's rules as tests, so a break reads as a named failure rather than a review note:
no module over 400 lines where the code lives, and the import contracts between the layers."""

from __future__ import annotations

from pathlib import Path

from tests import procs
from tests.wrapper_env import BIN, REPO

MAX_LINES = 400
PACKAGES = ("cdk", "stacks", "forkstage", "localcloud", "backend")
GENERATED = REPO / "cdk" / "providers" / "generated"


def line_count(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def test_no_module_over_400_lines() -> None:
    offenders = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if path.is_relative_to(GENERATED):
                continue
            lines = line_count(path)
            if lines > MAX_LINES:
                offenders.append(f"{path.relative_to(REPO)}: {lines} lines")
    listing = "\n".join(offenders)
    assert not offenders, f"modules over {MAX_LINES} lines (split them by concern):\n{listing}"


def test_import_contracts_hold() -> None:
    done = procs.run([str(BIN / "lint-imports")], cwd=REPO, timeout=120)
    report = "\n".join(part.strip() for part in (done.stdout, done.stderr) if part.strip())
    assert done.returncode == 0, f"import contracts broken (pyproject.toml):\n{report}"
