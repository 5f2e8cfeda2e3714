"""Run records: what one deploy/plan/destroy did, and the last run per stage on this machine.

``forkstage summary`` reads the record back for a pull-request comment; ``--json`` prints it.
A record carries the state serial and lineage the run left behind, so a reader can tell whether
it still describes the state (a plain ``cdktf deploy`` or ``destroy`` since then makes it stale).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunResult:
    """What one operation did, for the summary and --json."""

    stage: str
    operation: str
    # what the run acted on: "local cloud" or "cloud: Neon org ..., Cloudflare account ..."
    target: str = ""
    ok: bool = True
    added: int = 0
    changed: int = 0
    destroyed: int = 0
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    owner_serial: dict[str, int | None] = field(default_factory=dict)
    changes: list[dict[str, str]] = field(default_factory=list)
    finished_at: float = 0.0
    # the stage's state after the run (None: no state left, e.g. after a destroy)
    state_serial: int | None = None
    state_lineage: str = ""
    # destroy of a stage without state: nothing ran
    nothing_to_destroy: bool = False
    # destroy --cascade: the referencing stages destroyed first, in order
    cascaded: list[RunResult] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        data["phases"] = {k: round(v, 3) for k, v in self.phases.items()}
        data["cascaded"] = [c.to_json() for c in self.cascaded]
        return data


def _runs_dir(home: Path) -> Path:
    return home / "runs"


def record_run(home: Path, result: RunResult) -> None:
    """Keep the last run per stage (written atomically: a reader never sees half a record)."""
    runs = _runs_dir(home)
    runs.mkdir(parents=True, exist_ok=True)
    tmp = runs / f".{result.stage}.json.tmp"
    tmp.write_text(json.dumps(result.to_json(), indent=2))
    os.replace(tmp, runs / f"{result.stage}.json")


def last_run(home: Path, stage: str) -> dict[str, Any]:
    """The stage's last recorded run as written by ``record_run``; empty when there is none."""
    path = _runs_dir(home) / f"{stage}.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


def describes(run: dict[str, Any], serial: int | None, lineage: str) -> bool:
    """Whether a recorded run left the state that is there now (``serial`` None: no state).

    Records from before serials were kept never match: they cannot say which state they saw.
    """
    if not run or "state_serial" not in run:
        return False
    if serial is None:
        return run["state_serial"] is None
    return bool(run["state_serial"] == serial and run.get("state_lineage") == lineage)


def _running_dir(home: Path) -> Path:
    return home / "running"


@contextlib.contextmanager
def running(home: Path, stage: str, operation: str) -> Iterator[None]:
    """A pid file for one run of ``stage`` while it lasts: Terraform's lock info has no process
    id, so ``forkstage unlock`` tells a live run of this machine from a stale lock by these."""
    folder = _running_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stage}.{os.getpid()}.json"
    record = {"pid": os.getpid(), "stage": stage, "operation": operation, "started": time.time()}
    path.write_text(json.dumps(record))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a reused pid is no forkstage run
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"forkstage" in cmdline


def live_runs(home: Path, stage: str) -> list[dict[str, Any]]:
    """The forkstage runs of ``stage`` alive on this machine (pid files of dead ones are
    removed)."""
    found = []
    for path in sorted(_running_dir(home).glob(f"{stage}.*.json")):
        try:
            record = json.loads(path.read_text())
            pid = int(record["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if record.get("stage") != stage:
            continue
        if _alive(pid):
            found.append(record)
        else:
            path.unlink(missing_ok=True)
    return found
