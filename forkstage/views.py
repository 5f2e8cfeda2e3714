"""Read-only views of the backend: the stage list, a stage's outputs, its summary, prune picks.

What ``forkstage stages | outputs | summary | prune`` show, as data; the commands only print.
What only one view needs is imported in it: a listing does not pay for the local cloud's or
the preflight's modules.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from forkstage import embedded
from forkstage.context import Project
from forkstage.errors import BadInput
from forkstage.locks import created_at
from forkstage.state import DEFAULT_CONCURRENCY, StageEntry, StageState, StateReader

# Rows a summary shows first, in this order: (label, output name).
SUMMARY_FIELDS = (
    ("Branch", "neon_branch_id"),
    ("Endpoint host", "neon_endpoint_host"),
    ("Hyperdrive", "hyperdrive_id"),
    ("Worker", "worker_name"),
    ("Worker URL", "worker_url"),
)


def backend_reader(project: Project, *, concurrency: int = DEFAULT_CONCURRENCY) -> StateReader:
    """A reader of the project's backend, with the embedded server started if need be."""
    embedded.ensure_running(project.settings.backend, project.home)
    return StateReader(project.settings.backend, project.home, concurrency=concurrency)


def _age(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "an unknown time"


def stage_status(state: StageState | None) -> str:
    """``live``, or ``empty``: a workspace whose state holds no resources and no outputs (what a
    plain ``cdktf destroy`` leaves behind) is not a running stage."""
    return "live" if state is not None and (state.resources or state.outputs) else "empty"


# What a listing row needs of a state, kept per stage with the ETag it was read at, so a
# listing reads again only the states that changed since (no output values: they may be secret).
FACTS_FILE = "stage-facts.json"


def _facts_path(project: Project) -> Path:
    return project.home / "cache" / FACTS_FILE


def _load_facts(project: Project, scope: str) -> dict[str, dict[str, Any]]:
    try:
        doc = json.loads(_facts_path(project).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("backend") != scope:
        return {}
    stages = doc.get("stages")
    return stages if isinstance(stages, dict) else {}


def _save_facts(project: Project, scope: str, facts: dict[str, dict[str, Any]]) -> None:
    path = _facts_path(project)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        tmp.write_text(json.dumps({"backend": scope, "stages": facts}, sort_keys=True))
        tmp.replace(path)
    except OSError:
        pass  # a cache: the next listing reads the states again


def _facts(state: StageState) -> dict[str, Any]:
    return {
        "etag": state.etag,
        "serial": state.serial,
        "resources": state.resources,
        "status": stage_status(state),
        "last_change": state.last_modified.isoformat() if state.last_modified else None,
    }


def stage_rows(project: Project, *, concurrency: int = DEFAULT_CONCURRENCY) -> list[dict[str, Any]]:
    """Every stage in the backend: kind, status, owner, last change, serial, resources, lock
    holder; read from the state itself, so right after a plain cdktf run too.

    One listing, then the states that changed since the last listing on this machine (their
    ETag differs) and the locks the listing shows, read ``concurrency`` at a time: an unchanged
    or empty state object and an absent lock cost no request."""
    reader = backend_reader(project, concurrency=concurrency)
    backend = project.settings.backend
    scope = f"{backend.endpoint}|{backend.bucket}|{backend.key}"
    entries = reader.entries()
    known = _load_facts(project, scope)
    facts: dict[str, dict[str, Any]] = {}

    def read(entry: StageEntry) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        fact = None
        if entry.size:
            cached = known.get(entry.stage)
            if entry.etag and isinstance(cached, dict) and cached.get("etag") == entry.etag:
                fact = cached
            else:
                state = reader.state(entry.stage)
                fact = _facts(state) if state is not None else None
        return fact, reader.lock(entry.stage) if entry.locked else None

    rows = []
    for entry, (fact, lock) in zip(entries, reader.map(read, entries), strict=True):
        parsed = project.parse_stage_or_none(entry.stage)
        if fact is not None and fact.get("etag"):
            facts[entry.stage] = fact
        last_change = fact["last_change"] if fact else None
        rows.append(
            {
                "stage": entry.stage,
                "kind": parsed.kind if parsed else "unknown",
                "status": fact["status"] if fact else "empty",
                "owner": parsed.owner if parsed else None,
                "last_change": last_change,
                "age": _age(datetime.fromisoformat(last_change) if last_change else None),
                "serial": fact["serial"] if fact else 0,
                "resources": fact["resources"] if fact else 0,
                "locked_by": (lock or {}).get("Who") if lock else None,
                "lock_id": (lock or {}).get("ID") if lock else None,
                "lock_age": _age(created_at(lock)) if lock else None,
            }
        )
    if facts != known:
        _save_facts(project, scope, facts)
    return rows


def _deployed_state(project: Project, stage: str) -> StageState:
    project.parse_stage(stage)
    state = backend_reader(project).state(stage)
    if state is None:
        raise BadInput(f"stage {stage} is not deployed: forkstage deploy --stage {stage}")
    return state


def stage_outputs(
    project: Project, stage: str, state: StageState | None = None, *, secrets: bool = False
) -> dict[str, Any]:
    """A deployed stage's non-sensitive outputs (``secrets``: the sensitive ones too, read with
    the admin reader; never for ``summary``). On the local target also ``local_url``, where the
    local cloud serves the stage's Worker now, and database URLs that connect on this machine."""
    state = state or _deployed_state(project, stage)
    values = state.public_outputs()
    local = project.settings.target == "local"
    if local:
        from forkstage.local_workers import running_local_url  # only on the local target

        url = running_local_url(project.home, stage, values.get("worker_name"))
        if url:
            values["local_url"] = url
    if secrets:
        values.update(stage_secrets(project, stage, state))
    return values


def stage_secrets(project: Project, stage: str, state: StageState | None = None) -> dict[str, Any]:
    """The outputs marked sensitive (``database_url``, ``database_url_pooled``), read with the
    admin reader; on the local target with URLs that connect on this machine."""
    state = state or _deployed_state(project, stage)
    values = {k: v.get("value") for k, v in state.outputs.items() if v.get("sensitive")}
    if project.settings.target == "local":
        values = {k: local_database_url(v, project.home) for k, v in values.items()}
    return values


def local_database_url(value: Any, home: Path) -> Any:
    """A URL whose host is a local Neon endpoint (``*.neon.localhost``, pooler host included)
    rewritten to the ``127.0.0.1:<port>`` that serves it; the local servers have no TLS, so
    ``sslmode`` becomes ``disable``. Anything else is returned as it is."""
    if not isinstance(value, str) or "://" not in value:
        return value
    parts = urlsplit(value)
    from localcloud.endpoints import connect_overrides

    overrides = connect_overrides(value, home)
    if not overrides:
        return value
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@" if userinfo else ""
    netloc += f"{overrides['hostaddr']}:{overrides['port']}"
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query["sslmode"] = overrides["sslmode"]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))


def mask_values(secrets: dict[str, Any]) -> list[str]:
    """What GitHub Actions must mask for the secret outputs: each value (line by line) and, for
    a URL, its password alone too, so the password is hidden wherever it shows."""
    masks: list[str] = []
    for _, value in sorted(secrets.items()):
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        masks += [line for line in text.splitlines() if line.strip()]
        if "://" in text:
            password = urlsplit(text).password
            if password:
                masks += [password, unquote(password)]
    return list(dict.fromkeys(masks))


def github_output_text(values: dict[str, Any]) -> str:
    """``name=value`` lines for ``$GITHUB_OUTPUT``; a multi-line value uses the heredoc form with
    a random delimiter (as @actions/core writes it), so no value can end the block early."""
    chunks = []
    for name, value in sorted(values.items()):
        text = value if isinstance(value, str) else json.dumps(value)
        if "\n" in text or "\r" in text:
            delimiter = f"ghadelimiter_{uuid.uuid4()}"
            chunks.append(f"{name}<<{delimiter}\n{text}\n{delimiter}\n")
        else:
            chunks.append(f"{name}={text}\n")
    return "".join(chunks)


def summary_rows(values: dict[str, Any]) -> list[tuple[str, Any]]:
    """The summary's (label, value) rows: the known outputs first, then the rest by name."""
    known = {key for _, key in SUMMARY_FIELDS}
    rows = [(label, values[key]) for label, key in SUMMARY_FIELDS if key in values]
    return rows + [(k, v) for k, v in sorted(values.items()) if k not in known]


def stage_summary(project: Project, stage: str) -> dict[str, Any]:
    """What ``summary`` shows, read from the state itself: the target, the outputs, the state's
    serial and last change, and this machine's last run only if it left the state that is there
    now.

    ``changed_outside_forkstage`` is true when a run is recorded but the state moved on since
    (a plain ``cdktf deploy|destroy``, or a run elsewhere).
    """
    state = _deployed_state(project, stage)
    from forkstage.preflight import target_line
    from forkstage.runs import describes, last_run

    run = last_run(project.home, stage)
    current = describes(run, state.serial, state.lineage)
    owner = project.parse_stage(stage).owner
    return {
        "stage": stage,
        "schema": schema_section(project, stage) if owner else None,
        "target": target_line(project.settings),
        "outputs": stage_outputs(project, stage, state),
        "last_run": run if current else {},
        "changed_outside_forkstage": bool(run) and not current,
        "state": {
            "serial": state.serial,
            "resources": state.resources,
            "status": stage_status(state),
            "last_modified": state.last_modified.isoformat() if state.last_modified else None,
        },
    }


def schema_section(project: Project, stage: str) -> dict[str, Any]:
    """The stage's schema against its owner's and the migrations it applied beyond it; when a
    database cannot be reached, ``error`` says why (a summary must not fail for it)."""
    from forkstage.errors import ForkstageError
    from forkstage.schemadiff import StagePair

    pair = StagePair.resolve(project, stage, None)
    try:
        result, beyond = pair.compare()
    except (ForkstageError, OSError) as exc:
        return {"against": pair.against, "error": str(exc)}
    return {"against": pair.against, "migrations": beyond, "diff": result.as_json()}


def change_line(summary: dict[str, Any]) -> tuple[str, str]:
    """(label, text) about the stage's last change for the summary (``stage_summary``)."""
    run, state = summary["last_run"], summary["state"]
    moment = datetime.fromisoformat(state["last_modified"]) if state["last_modified"] else None
    at = f"{_when(moment)} (serial {state['serial']})"
    if summary["changed_outside_forkstage"]:
        return "Last change", f"outside forkstage at {at}"
    if not run:
        return "Last change", f"at {at}; no forkstage run recorded on this machine"
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(run.get("finished_at", 0)))
    return "Last run", (
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
    longer than ``max_age`` seconds. Owner stages are never candidates.

    Both come from the bucket listing alone (names and the state objects' last change): no
    state is read, however many stages there are."""
    now = time.time()
    victims = []
    for entry in backend_reader(project).entries():
        parsed = project.parse_stage_or_none(entry.stage)
        if parsed is None or parsed.kind != "referencing":
            continue
        closed = keep is not None and entry.stage not in keep
        stale = False
        if max_age is not None and entry.size and entry.last_modified:
            stale = now - entry.last_modified.timestamp() > max_age
        if closed or stale:
            victims.append({"stage": entry.stage, "reason": "closed" if closed else "stale"})
    return victims
