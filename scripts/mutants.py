"""Mutation proof of the safety checks (issue 26): each mutant removes one check in a scratch
copy of the tracked files and runs the tests that cover it; every mutant must make them fail.

Not part of `make test` (`make mutants`; each mutant runs its tests once, after a control run
of all of them unmutated). Prints a table; exit 1 if a mutant survived, 2 if the control failed.
Usage: .venv/bin/python scripts/mutants.py [NAME ...]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REFUSALS = "tests/test_refusals.py::"
INTERRUPTS = "tests/test_interrupts.py::"


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS = (
    Mutant(
        "protected stage without --force",
        "forkstage/guards.py",
        "if stage.name in project.settings.protected and not force:",
        "if False:",
        (REFUSALS + "test_a_protected_stage_is_not_destroyed_without_force",),
    ),
    Mutant(
        "cascade reaching a protected stage",
        "forkstage/guards.py",
        "if protected and not force:",
        "if False:",
        (REFUSALS + "test_a_cascade_that_reaches_a_protected_stage_is_refused",),
    ),
    Mutant(
        "check_destroy_plan: PR deletes neon_project",
        "forkstage/guards.py",
        'if stage.is_referencing and change["type"] in OWNER_ONLY_TYPES:',
        "if False:",
        (REFUSALS + "test_a_pr_destroy_plan_that_deletes_a_neon_project_is_refused",),
    ),
    Mutant(
        "owner serial changed during destroy",
        "forkstage/guards.py",
        "    if before != after:\n        raise Failed(",
        "    if False:\n        raise Failed(",
        (REFUSALS + "test_owner_state_changed_during_a_destroy_is_named",),
    ),
    Mutant(
        "reset of a stage not deployed",
        "forkstage/pipeline.py",
        "        if not guards.has_state(run.stage, run.reader):",
        "        if False:",
        (REFUSALS + "test_a_reset_of_a_stage_that_is_not_deployed_is_refused",),
    ),
    Mutant(
        "prune --older-than: stale",
        "forkstage/views.py",
        "stale = now - entry.last_modified.timestamp() > max_age",
        "stale = False",
        (REFUSALS + "test_prune_older_than_takes_only_stale_stages",),
    ),
    Mutant(
        "local serve: stage not deployed",
        "forkstage/local_workers.py",
        "    if state is None:\n        raise BadInput(",
        "    if False:\n        raise BadInput(",
        (REFUSALS + "test_local_serve_names_what_it_cannot_serve",),
    ),
    Mutant(
        "owner referenced: destroy refused",
        "forkstage/guards.py",
        "        return sorted(dependents)\n    if live:",
        "        return sorted(dependents)\n    if False:",
        ("tests/test_exits.py::test_owner_is_refused_while_referenced_then_cascades",),
    ),
    Mutant(
        "deploy replacing a guarded resource (--allow-replace)",
        "forkstage/pipeline.py",
        "if touched and not self.allow_replace:",
        "if False:",
        (INTERRUPTS + "test_a_deploy_that_replaces_the_owners_project_is_refused_then_allowed",),
    ),
    Mutant(
        "--allow-replace under a live fork",
        "forkstage/pipeline.py",
        "            if touched:  # allowed, but never under live forks",
        "            if False:  # allowed, but never under live forks",
        (INTERRUPTS + "test_a_deploy_that_replaces_the_owners_project_is_refused_then_allowed",),
    ),
    Mutant(
        "config-level prevent_destroy (cdk.guard.keep)",
        "cdk/guard.py",
        '    element.add_override("lifecycle.prevent_destroy", True)',
        "    pass",
        (INTERRUPTS + "test_plain_cdktf_destroy_of_the_owner_stops_at_plan",),
    ),
)


def scratch_copy() -> Path:
    """The tracked files (as they are in the work tree) in a temporary folder."""
    root = Path(tempfile.mkdtemp(prefix="forkstage-mutant-"))
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = REPO / name.decode()
        if source.is_file():
            target = root / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (root / "node_modules").symlink_to(REPO / "node_modules")
    return root


def run(mutant: Mutant | None, tests: tuple[str, ...]) -> tuple[str, float]:
    """Run ``tests`` in a scratch copy with ``mutant`` applied (None: the control run)."""
    root = scratch_copy()
    try:
        if mutant is not None:
            target = root / mutant.path
            text = target.read_text()
            if text.count(mutant.old) != 1:
                return "NOT APPLIED (check moved)", 0.0
            target.write_text(text.replace(mutant.old, mutant.new))
        env = {**os.environ, "PYTHONPATH": str(root)}  # before the editable install's finder
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        seconds = time.perf_counter() - started
        if mutant is None:
            if proc.returncode != 0:
                print(proc.stdout[-3000:], file=sys.stderr)
            return (
                "passes" if proc.returncode == 0 else f"FAILS (pytest {proc.returncode})"
            ), seconds
        return (
            "killed" if proc.returncode == 1 else f"SURVIVED (pytest {proc.returncode})"
        ), seconds
    finally:
        shutil.rmtree(root, ignore_errors=True)


def file_order(test: str) -> tuple[str, int]:
    """A test id's place in its file: the modules' own order (their fixtures share stages)."""
    path, name = test.split("::")
    return path, (REPO / path).read_text().find(f"def {name}(")


def main(names: list[str]) -> int:
    chosen = [m for m in MUTANTS if not names or any(n in m.name for n in names)]
    print(f"{'check removed':<55} {'result':<26} seconds")
    # the control: unmutated, the same tests pass (so a kill is the check's doing, not a flake)
    tests = tuple(sorted(dict.fromkeys(t for m in chosen for t in m.tests), key=file_order))
    result, seconds = run(None, tests)
    print(
        f"{'none (control run of every listed test)':<55} {result:<26} {seconds:7.1f}", flush=True
    )
    if result != "passes":
        return 2
    survived = 0
    for mutant in chosen:
        result, seconds = run(mutant, mutant.tests)
        survived += result != "killed"
        print(f"{mutant.name:<55} {result:<26} {seconds:7.1f}", flush=True)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
