"""Read-only views of the backend: ``stages``, ``outputs``, ``summary``, ``env``."""

from __future__ import annotations

import json
import shlex
import time
from datetime import UTC, datetime
from typing import Any

import click

from forkstage import embedded
from forkstage.context import Project, stage_option
from forkstage.errors import BadInput
from forkstage.report import Reporter
from forkstage.runner import StageRun
from forkstage.state import StateReader


def _reader(project: Project) -> StateReader:
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
    reader = _reader(project)
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


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the stages as a JSON list.")
def stages(as_json: bool) -> None:
    """List every stage in the state backend: kind, owner, serial, resources, lock holder.

    Example: forkstage stages --json
    """
    rows = stage_rows(Project.load())
    if as_json:
        click.echo(json.dumps(rows, sort_keys=True))
        return
    if not rows:
        click.echo("no stages in the backend")
        return
    header = ("STAGE", "KIND", "OWNER", "LAST CHANGE", "SERIAL", "RESOURCES", "LOCKED BY")
    table = [header] + [
        (
            r["stage"],
            r["kind"],
            r["owner"] or "-",
            r["age"],
            str(r["serial"]),
            str(r["resources"]),
            r["locked_by"] or "-",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _outputs(project: Project, stage: str) -> dict[str, Any]:
    project.parse_stage(stage)
    state = _reader(project).state(stage)
    if state is None:
        raise BadInput(f"stage {stage} is not deployed: forkstage deploy --stage {stage}")
    values = state.public_outputs()
    if project.settings.target == "local":
        from forkstage.commands.local import running_worker_url

        url = running_worker_url(project.home, stage)
        if url:
            values["worker_url"] = url
    return values


@click.command()
@stage_option
@click.option("--json", "as_json", is_flag=True, help="Print the outputs as a JSON object.")
def outputs(stage: str, as_json: bool) -> None:
    """Print a stage's non-sensitive outputs (sensitive ones are never shown).

    Example: forkstage outputs --stage pr-147 --json
    """
    values = _outputs(Project.load(), stage)
    if as_json:
        click.echo(json.dumps(values, sort_keys=True))
        return
    for name, value in sorted(values.items()):
        click.echo(f"{name} = {json.dumps(value) if not isinstance(value, str) else value}")


SUMMARY_FIELDS = (
    ("Branch", "neon_branch_id"),
    ("Endpoint host", "neon_endpoint_host"),
    ("Hyperdrive", "hyperdrive_id"),
    ("Worker", "worker_name"),
    ("Worker URL", "worker_url"),
)


@click.command()
@stage_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["markdown", "text", "json"]),
    default="markdown",
    show_default=True,
)
def summary(stage: str, fmt: str) -> None:
    """A stage's preview summary, e.g. for a pull-request comment.

    Example: forkstage summary --stage pr-147 --format markdown > summary.md
    """
    project = Project.load()
    values = _outputs(project, stage)
    run_file = project.home / "runs" / f"{stage}.json"
    run: dict[str, Any] = json.loads(run_file.read_text()) if run_file.is_file() else {}
    if fmt == "json":
        click.echo(json.dumps({"stage": stage, "outputs": values, "last_run": run}, sort_keys=True))
        return
    rows = [(label, values[key]) for label, key in SUMMARY_FIELDS if key in values]
    rows += [
        (k, v) for k, v in sorted(values.items()) if k not in {key for _, key in SUMMARY_FIELDS}
    ]
    if run:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(run.get("finished_at", 0)))
        change = (
            f"{run.get('operation')}: {run.get('added', 0)} created, "
            f"{run.get('changed', 0)} changed, "
            f"{run.get('destroyed', 0)} destroyed in {run.get('seconds', 0):.1f}s ({when})"
        )
    else:
        change = "no run recorded on this machine"
    if fmt == "text":
        click.echo(f"stage {stage}")
        for label, value in rows:
            click.echo(f"  {label}: {value}")
        click.echo(f"  last run: {change}")
        return
    click.echo(f"<!-- forkstage:{stage} -->")
    click.echo(f"### Preview `{stage}`")
    click.echo("")
    click.echo("| | |")
    click.echo("|---|---|")
    for label, value in rows:
        click.echo(f"| {label} | `{value}` |")
    click.echo("")
    click.echo(f"Last run — {change}")
    changes = [c for c in run.get("changes", []) if c.get("action") != "no-op"]
    if changes:
        click.echo("")
        click.echo("<details><summary>Changes</summary>")
        click.echo("")
        for item in changes:
            click.echo(f"- {item['action']} `{item['address']}`")
        click.echo("")
        click.echo("</details>")


@click.command(name="env")
@stage_option
def env_cmd(stage: str) -> None:
    """Print shell exports that make a plain `npx cdktf deploy stack-<stage>` safe.

    Prepares the stage first (backend up, init, workspace created), so cdktf-cli never stops at
    its workspace prompt.

    Example: eval "$(forkstage env --stage pr-147)" && npx cdktf deploy stack-pr-147
    """
    project = Project.load()
    run = StageRun(project, project.parse_stage(stage), reporter=Reporter(quiet=True))
    run.start_backend()
    run.check_owner_deployed()
    run.synth()
    run.init()
    env = run.env()
    keys = (
        "FORKSTAGE_STAGE",
        "FORKSTAGE_HOME",
        "TF_WORKSPACE",
        "TF_CLI_CONFIG_FILE",
        "TF_IN_AUTOMATION",
        "TF_INPUT",
        "CHECKPOINT_DISABLE",
        "CDKTF_HOME",
        "CDKTF_DISABLE_PLUGIN_CACHE_ENV",
        "DISABLE_VERSION_CHECK",
        "CDKTF_TELEMETRY_DISABLED",
        "TERRAFORM_BINARY_NAME",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "FORKSTAGE_BACKEND_ENDPOINT",
        "FORKSTAGE_BACKEND_KIND",
        "PATH",
    )
    for key in keys:
        if key in env:
            click.echo(f"export {key}={shlex.quote(env[key])}")
