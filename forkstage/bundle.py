"""The Worker bundle: built before synth when it is missing or stale, with the project's esbuild.

The bundle (``<worker>/dist/index.js``) records the hash of what it was built from: every file
under ``<worker>/src`` and the project's ``package-lock.json`` (the bundler's and the packages'
versions). A clone has fresh file times, so only that hash says whether it is stale; a bundle
that is committed and fresh needs no Node packages at all. ``build-worker.mjs`` beside this
module does the build (and ``scripts/build-worker.mjs`` of forkstage's repository uses it).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ENTRY = Path("src") / "index.js"
BUNDLE = Path("dist") / "index.js"
LOCK_FILE = "package-lock.json"
MARK = "// forkstage-bundle-sha256: "
BUILDER = Path(__file__).resolve().parent / "build-worker.mjs"
BUILD_TIMEOUT = 120.0


class BundleError(Exception):
    """The bundle cannot be built here; the message is one line saying what to do."""


@dataclass(frozen=True)
class WorkerBundle:
    """One project's Worker: source folder, entry point, bundle, and the lock file."""

    root: Path
    worker: Path

    @property
    def entry(self) -> Path:
        return self.worker / ENTRY

    @property
    def bundle(self) -> Path:
        return self.worker / BUNDLE

    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def sources_hash(self) -> str:
        """sha256 over ``<path>\\0<sha256 of bytes>\\n`` for each source file (sorted by path
        relative to the project), then the lock file's line when there is one."""
        files = sorted((self._rel(p), p) for p in (self.worker / "src").rglob("*") if p.is_file())
        lock = self.root / LOCK_FILE
        if lock.is_file():
            files.append((LOCK_FILE, lock))
        lines = "".join(
            f"{rel}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n" for rel, path in files
        )
        return hashlib.sha256(lines.encode()).hexdigest()

    def recorded_hash(self) -> str | None:
        try:
            with self.bundle.open(encoding="utf-8", errors="replace") as handle:
                head = [handle.readline() for _ in range(8)]
        except OSError:
            return None
        for line in head:
            if line.startswith(MARK):
                return line[len(MARK) :].strip()
        return None

    def status(self) -> str:
        """``none`` (no Worker folder), ``fresh``, ``stale`` or ``missing``."""
        if not self.worker.is_dir():
            return "none"
        if not self.entry.is_file():
            raise BundleError(
                f"the Worker's entry point {self._rel(self.entry)} is missing: restore it, or "
                f"set [paths] worker in forkstage.toml to the folder holding src/index.js"
            )
        recorded = self.recorded_hash()
        if recorded is None:
            return "missing" if not self.bundle.is_file() else "stale"
        return "fresh" if recorded == self.sources_hash() else "stale"

    def tooling_problem(self) -> str | None:
        """What stops a build here (no node, no esbuild in node_modules), else None."""
        if shutil.which("node") is None:
            return "node is not on PATH: install Node.js 20 or later"
        if not (self.root / "node_modules" / "esbuild" / "package.json").is_file():
            return f"esbuild is not installed: run `npm ci` (or `npm install`) in {self.root}"
        return None

    def build(self) -> None:
        problem = self.tooling_problem()
        if problem:
            bundle = self._rel(self.bundle)
            raise BundleError(f"the Worker bundle {bundle} must be built: {problem}")
        argv = [
            "node",
            str(BUILDER),
            "--root",
            str(self.root),
            "--entry",
            self._rel(self.entry),
            "--out",
            self._rel(self.bundle),
            "--hash",
            self.sources_hash(),
        ]
        try:
            done = subprocess.run(
                argv,
                cwd=self.root,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=BUILD_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BundleError(
                f"bundling {self._rel(self.entry)} took over {BUILD_TIMEOUT:.0f}s"
            ) from None
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            last = detail[-1] if detail else f"exit {done.returncode}"
            raise BundleError(f"bundling {self._rel(self.entry)} failed: {last}")

    def ensure(self) -> str:
        """Build when missing or stale; returns the status found (``built`` when it built)."""
        found = self.status()
        if found in ("missing", "stale"):
            self.build()
            return "built"
        return found
