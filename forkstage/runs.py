"""Run records: what one deploy/plan/destroy did, and the last run per stage on this machine.

``forkstage summary`` reads the record back for a pull-request comment; ``--json`` prints it.
A record carries the state serial and lineage the run left behind, so a reader can tell whether
it still describes the state (a plain ``cdktf deploy`` or ``destroy`` since then makes it stale).
"""

from __future__ import annotations

import json
import os
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
