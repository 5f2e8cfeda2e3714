"""Read-only views of the backend: ``stages``, ``outputs``, ``summary``, ``env``."""

from __future__ import annotations

import json
import os
import shlex
from typing import Any

import click

from forkstage.commands import stage_option
from forkstage.context import Project
from forkstage.errors import BadInput
from forkstage.views import (
    change_line,
    github_output_text,
    mask_values,
    run_changes,
    stage_outputs,
    stage_rows,
    stage_secrets,
    stage_summary,
    summary_rows,
)

# What `forkstage env` exports: enough for a plain `cdktf deploy` to run like ours.
ENV_KEYS = (
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


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the stages as a JSON list.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=16,
    show_default=True,
    help="States read from the backend at once.",
)
def stages(as_json: bool, concurrency: int) -> None:
    """List every stage in the state backend: kind, status, owner, serial, resources, lock holder.

    Read from the state itself: a stage emptied by a plain `cdktf destroy` shows as `empty`.
    States are read --concurrency at a time; a lock is read only where the listing shows one.

    Example: forkstage stages --json --concurrency 32
    """
    rows = stage_rows(Project.load(), concurrency=concurrency)
    if as_json:
        click.echo(json.dumps(rows, sort_keys=True))
        return
    if not rows:
        click.echo("no stages in the backend")
        return
    header = ("STAGE", "KIND", "STATUS", "OWNER", "LAST CHANGE", "SERIAL", "RESOURCES", "LOCKED BY")
    table = [header] + [
        (
            r["stage"],
            r["kind"],
            r["status"],
            r["owner"] or "-",
            r["age"],
            str(r["serial"]),
            str(r["resources"]),
            f"{r['locked_by']} ({r['lock_age']})" if r["locked_by"] else "-",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@click.command()
@stage_option
@click.option("--json", "as_json", is_flag=True, help="Print the outputs as a JSON object.")
@click.option(
    "--show-secrets",
    is_flag=True,
    help="Also print the sensitive outputs (database_url, database_url_pooled).",
)
@click.option(
    "--github-output",
    is_flag=True,
    help="Append every output, secrets included, to the file $GITHUB_OUTPUT names, after "
    "printing ::add-mask:: for each secret.",
)
def outputs(stage: str, as_json: bool, show_secrets: bool, github_output: bool) -> None:
    """Print a stage's outputs: the non-sensitive ones unless --show-secrets.

    On the local target also local_url (where the local cloud serves the Worker), and the
    database URLs connect on this machine. --github-output hands all of them to later steps
    of a GitHub Actions job, each secret masked in the log first.

    Example: forkstage outputs --stage pr-147 --github-output
    """
    target = os.environ.get("GITHUB_OUTPUT", "") if github_output else ""
    if github_output and not target:
        raise BadInput(
            "GITHUB_OUTPUT is not set: --github-output appends to the file GitHub Actions "
            "names there (set it to a file path to use it elsewhere)"
        )
    project = Project.load()
    values = stage_outputs(project, stage)
    secrets = stage_secrets(project, stage) if show_secrets or github_output else {}
    if github_output:
        for mask in mask_values(secrets):
            click.echo(f"::add-mask::{_escape_command_data(mask)}")
        try:
            with open(target, "a", encoding="utf-8") as out:
                out.write(github_output_text({**values, **secrets}))
        except OSError as exc:
            raise BadInput(f"cannot append to GITHUB_OUTPUT ({target}): {exc.strerror}") from None
    if show_secrets:
        values.update(secrets)
    if as_json:
        click.echo(json.dumps(values, sort_keys=True))
        return
    for name, value in sorted(values.items()):
        click.echo(f"{name} = {json.dumps(value) if not isinstance(value, str) else value}")


def _escape_command_data(value: str) -> str:
    """A workflow command's data, escaped as @actions/core does (the runner unescapes it)."""
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


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

    Read from the state: the last forkstage run is shown only while it describes the state; after
    a plain `cdktf deploy|destroy` the summary says the stage was changed outside forkstage.

    Example: forkstage summary --stage pr-147 --format markdown > summary.md
    """
    data = stage_summary(Project.load(), stage)
    if fmt == "json":
        click.echo(json.dumps(data, sort_keys=True))
        return
    run = data["last_run"]
    rows = summary_rows(data["outputs"])
    heading, change = change_line(data)
    if fmt == "text":
        click.echo(f"stage {stage}")
        click.echo(f"  target: {data['target']}")
        for name, value in rows:
            click.echo(f"  {name}: {value}")
        click.echo(f"  {heading.lower()}: {change}")
        return
    click.echo(f"<!-- forkstage:{stage} -->")
    click.echo(f"### Preview `{stage}`")
    click.echo("")
    click.echo("| | |")
    click.echo("|---|---|")
    click.echo(f"| Target | {data['target']} |")
    for label, value in rows:
        click.echo(f"| {label} | `{value}` |")
    click.echo("")
    click.echo(f"{heading} — {change}")
    changes = run_changes(run)
    if changes:
        click.echo("")
        click.echo("<details><summary>Changes</summary>")
        click.echo("")
        for item in changes:
            click.echo(f"- {item['action']} `{item['address']}`")
        click.echo("")
        click.echo("</details>")
    if data.get("schema"):
        click.echo("")
        click.echo(schema_markdown(data["schema"]))


# A schema diff longer than this many lines is collapsed in the summary.
SCHEMA_LINES_SHOWN = 15


def schema_markdown(section: dict[str, Any]) -> str:
    """The summary's "Schema changes against <owner>" section (``views.schema_section``)."""
    from forkstage.schemadiff import SchemaDiff

    lines = [f"#### Schema changes against `{section['against']}`", ""]
    if "error" in section:
        return "\n".join([*lines, f"Schema not compared: {section['error']}"])
    result = SchemaDiff(section["diff"]["stage"], section["against"])
    for key in ("added", "removed", "changed"):
        getattr(result, key).extend(section["diff"][key])
    migrations = section["migrations"]
    if migrations:
        names = ", ".join(f"`{name}`" for name in migrations)
        lines.append(f"Migrations applied beyond `{section['against']}`: {names}")
        lines.append("")
    if result.empty:
        return "\n".join([*lines, "No schema changes."])
    body = result.markdown()
    if len(result.lines()) > SCHEMA_LINES_SHOWN:
        count = len(result.lines())
        body = f"<details><summary>{count} differences</summary>\n\n{body}\n\n</details>"
    return "\n".join([*lines, body])


@click.command(name="env")
@stage_option
@click.option(
    "--no-preflight",
    is_flag=True,
    help="Cloud target: skip the live API checks of the credentials.",
)
def env_cmd(stage: str, no_preflight: bool) -> None:
    """Print shell exports that make a plain `npx cdktf deploy|destroy|diff` act on <stage>.

    Prepares the stage first (backend up, init, workspace created), so cdktf-cli never stops at
    its workspace prompt, and cdktf's stack folder (a lock file for the local stand-ins, so
    cdktf's provider-lock step needs no registry). The exports pin the engine and mark the
    shell prepared (FORKSTAGE_PREPARED): without them the app makes init and plan fail at once.
    On the cloud target the preflight runs first, as for deploy.

    Example: eval "$(forkstage env --stage pr-147)" && npx cdktf deploy
    """
    from forkstage.pipeline import CdktfApplier, Pipeline
    from forkstage.report import Reporter
    from forkstage.runner import StageRun
    from forkstage.synth import prepare_cdktf_folder

    project = Project.load()
    run = StageRun(project, project.parse_stage(stage), reporter=Reporter(quiet=True))
    # the shell is for plain cdktf (cdktn): its CLI is checked with the rest, before anything runs
    applier = CdktfApplier(cli=project.settings.cdk)
    Pipeline(run, applier, live_preflight=not no_preflight).prepare()
    prepare_cdktf_folder(project, stage, run.stack_dir / "cdk.tf.json")
    env = {**run.env(), "FORKSTAGE_PREPARED": stage}
    for key in (*ENV_KEYS, "FORKSTAGE_PREPARED"):
        if key in env:
            click.echo(f"export {key}={shlex.quote(env[key])}")
