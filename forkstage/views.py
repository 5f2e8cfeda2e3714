"""Read-only views of the backend: the stage list, a stage's outputs, its summary, prune picks.

What ``forkstage stages | outputs | summary | prune`` show, as data; the commands only print.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from forkstage import embedded
from forkstage.context import Project
from forkstage.errors import BadInput
from forkstage.local_workers import running_worker_url
from forkstage.state import StateReader

# Rows a summary shows first, in this order: (label, output name).
SUMMARY_FIELDS = (
    ("Branch", "neon_branch_id"),
    ("Endpoint host", "neon_endpoint_host"),
    ("Hyperdrive", "hyperdrive_id"),
    ("Worker", "worker_name"),
    ("Worker URL", "worker_url"),
)


def backend_reader(project: Project) -> StateReader:
    """A reader of the project's backend, with the embedded server started if need be."""
    embedded.ensure_running(project.settings.backend, project.home)
    return StateReader(project.settings.backend, project.home)


def _age(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def stage_rows(project: Project) -> list[dict[str, Any]]:
    """Every stage in the backend: kind, owner, last change, serial, resources, lock holder."""
    reader = backend_reader(project)
    rows = []
    for name in reader.stages():
        parsed = project.parse_stage_or_none(name)
        state = reader.state(name)
        lock = reader.lock(name)
        rows.append(
            {
                "stage": name,
                "kind": parsed.kind if parsed else "unknown",
                "owner": parsed.owner if parsed else None,
                "last_change": state.last_modified.isoformat()
                if state and state.last_modified
                else None,
                "age": _age(state.last_modified if state else None),
                "serial": state.serial if state else 0,
                "resources": state.resources if state else 0,
                "locked_by": (lock or {}).get("Who") if lock else None,
                "lock_id": (lock or {}).get("ID") if lock else None,
            }
        )
    return rows


def stage_outputs(project: Project, stage: str) -> dict[str, Any]:
    """A deployed stage's non-sensitive outputs, plus its Worker's URL if the local cloud
    serves it now."""
    project.parse_stage(stage)
    state = backend_reader(project).state(stage)
    if state is None:
        raise BadInput(f"stage {stage} is not deployed: forkstage deploy --stage {stage}")
    values = state.public_outputs()
    if project.settings.target == "local":
        url = running_worker_url(project.home, stage)
        if url:
            values["worker_url"] = url
    return values


def summary_rows(values: dict[str, Any]) -> list[tuple[str, Any]]:
    """The summary's (label, value) rows: the known outputs first, then the rest by name."""
    known = {key for _, key in SUMMARY_FIELDS}
    rows = [(label, values[key]) for label, key in SUMMARY_FIELDS if key in values]
    return rows + [(k, v) for k, v in sorted(values.items()) if k not in known]


def run_line(run: dict[str, Any]) -> str:
    """One line about a recorded run (``forkstage.runs.last_run``) for the summary."""
    if not run:
        return "no run recorded on this machine"
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(run.get("finished_at", 0)))
    return (
        f"{run.get('operation')}: {run.get('added', 0)} created, "
        f"{run.get('changed', 0)} changed, "
        f"{run.get('destroyed', 0)} destroyed in {run.get('seconds', 0):.1f}s ({when})"
    )


def run_changes(run: dict[str, Any]) -> list[dict[str, str]]:
    """The recorded run's changes that did something (no-ops left out)."""
    return [c for c in run.get("changes", []) if c.get("action") != "no-op"]


def prune_candidates(
    project: Project, *, keep: set[str] | None, max_age: float | None
) -> list[dict[str, str]]:
    """Referencing stages to prune: closed (not in ``keep``, when given) or unchanged for
    longer than ``max_age`` seconds. Owner stages are never candidates."""
    now = time.time()
    victims = []
    for row in stage_rows(project):
        if row["kind"] != "referencing":
            continue
        closed = keep is not None and row["stage"] not in keep
        stale = False
        if max_age is not None and row["last_change"]:
            stale = now - datetime.fromisoformat(row["last_change"]).timestamp() > max_age
        if closed or stale:
            victims.append({"stage": row["stage"], "reason": "closed" if closed else "stale"})
    return victims
