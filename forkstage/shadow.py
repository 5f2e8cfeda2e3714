"""Folders of an app that would shadow the packages forkstage's app side imports.

A cdktf app runs as `python3 main.py`, so its own folder comes first on the import path: a
team's ``cdk/`` (a package of the same name as forkstage's constructs) would be imported instead
of forkstage's and the synth would die on ``No module named 'cdk.settings'``. Named in one line,
with the fix, before anything imports them. Only packages and modules count: a folder without
``__init__.py`` is a namespace portion that never wins over an installed package.
"""

from __future__ import annotations

from pathlib import Path

# What the app process imports by top-level name: forkstage's constructs and what they run on.
APP_SIDE = ("cdk", "cdktf", "cdktn", "constructs", "jsii")
_OURS = Path(__file__).resolve().parent.parent  # where forkstage's own top-level packages live


def _shadows(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name / "__init__.py", folder / f"{name}.py"):
        if candidate.is_file():
            mine = _OURS / candidate.relative_to(folder)
            if mine.is_file() and mine.resolve() == candidate.resolve():
                return None  # forkstage's own source tree (this repository)
            return candidate.parent if candidate.name == "__init__.py" else candidate
    return None


def shadowing(folder: Path) -> str | None:
    """One line naming the first package of ``folder`` that shadows forkstage's, else None.

    A checkout of forkstage itself (its example app at the root) holds forkstage's own
    packages: they are the library, whichever copy is imported."""
    if (folder / "forkstage" / "shadow.py").is_file():
        return None
    for name in APP_SIDE:
        found = _shadows(folder, name)
        if found is not None:
            return (
                f"{found} would shadow forkstage's {name!r} package (the app's folder comes "
                f"first on the import path): rename it, or keep the app in its own folder "
                f"(e.g. forkstage init infra)"
            )
    return None
