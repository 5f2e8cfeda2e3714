"""``forkstage deploy | plan | destroy | reset | prune``: what CI pipelines call."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from forkstage import interrupts
from forkstage.commands import stage_option
from forkstage.context import Project
from forkstage.pipeline import Pipeline, applier_for
from forkstage.preflight import preflight
from forkstage.report import Reporter
from forkstage.runner import StageRun
from forkstage.runs import RunResult
from forkstage.views import prune_candidates

F = TypeVar("F", bound=Callable[..., Any])

# Go's time.ParseDuration, which Terraform's -lock-timeout uses: 30s, 5m, 1h30m, 1.5h, 500ms.
_GO_DURATION = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+")


class TerraformDuration(click.ParamType):
    """A Terraform duration, checked while the flags are parsed: before any backend, synth or
    workspace exists, so a typo costs nothing."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if text != "0" and not _GO_DURATION.fullmatch(text):
            self.fail(f"{text!r} is not a Terraform duration: use e.g. 30s, 5m or 1h", param, ctx)
        return text


_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_seconds(text: str) -> float:
    """A duration ``TerraformDuration`` accepted, in seconds (``1m30s`` -> 90)."""
    return sum(
        float(number) * _GO_UNITS[unit]
        for number, unit in re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", text)
    )


def run_options(func: F) -> F:
    """What every command that runs Terraform takes: ``--quiet`` and ``--stop-timeout``."""
    func = click.option(
        "--stop-timeout",
        type=TerraformDuration(),
        default="60s",
        show_default=True,
        metavar="DURATION",
        help="After Ctrl-C or SIGTERM, how long Terraform may take to stop gracefully (record "
        "what it made, release the lock) before it is killed; a second interrupt kills it at "
        "once.",
    )(func)
    return click.option(
        "--quiet",
        "-q",
        is_flag=True,
        help="No per-resource progress lines, only the phase lines and the summary.",
    )(func)


@contextlib.contextmanager
def interruptible(stop_timeout: str, resume: str) -> Iterator[None]:
    """SIGINT/SIGTERM stop Terraform gracefully (exit 130/143) and name ``resume``."""
    try:
        with interrupts.handling(go_seconds(stop_timeout) or interrupts.DEFAULT_STOP_TIMEOUT):
            yield
    except interrupts.Interrupted as exc:
        exc.resume = resume
        raise


def no_preflight_option(func: F) -> F:
    return click.option(
        "--no-preflight",
        is_flag=True,
        help="Cloud target: skip the live API checks of the credentials (the checks that "
        "they are set still run).",
    )(func)


def common_options(func: F) -> F:
    func = no_preflight_option(func)
    func = click.option(
        "--lock-timeout",
        type=TerraformDuration(),
        default="0s",
        show_default=True,
        metavar="DURATION",
        help="Wait this long for another run's state lock (Terraform duration: 30s, 5m, 1h) "
        "before failing.",
    )(func)
    func = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(func)
    func = run_options(func)
    func = click.option(
        "--via",
        type=click.Choice(["engine", "cdktf", "cdktn"]),
        default="engine",
        show_default=True,
        help="Run the stack with forkstage's engine, or through `npx cdktf` (`npx cdktn`).",
    )(func)
    return stage_option(func)


ACTION_COLORS = {"create": "green", "update": "yellow", "delete": "red", "replace": "magenta"}


def _report(result: RunResult, as_json: bool) -> None:
    """One summary line, the owner's unchanged serial, planned changes, outputs.

    Colors only on a terminal (click drops them when stdout is not a TTY).
    """
    if as_json:
        click.echo(json.dumps(result.to_json(), sort_keys=True))
        return
    for first in result.cascaded:
        _report(first, as_json)
    if result.nothing_to_destroy:
        click.echo(f"nothing to destroy: stage {result.stage} has no state")
        return
    verbs = {"deploy": "deployed", "destroy": "destroyed", "plan": "planned", "reset": "reset"}
    verb = verbs[result.operation]
    if result.operation == "plan":
        counts = f"{result.added} to add, {result.changed} to change, {result.destroyed} to destroy"
    else:
        counts = f"{result.added} added, {result.changed} changed, {result.destroyed} destroyed"
    click.secho(f"{verb} {result.stage}: {counts} ({result.seconds:.1f}s)", fg="green", bold=True)
    if result.owner_serial:
        before, after = result.owner_serial["before"], result.owner_serial["after"]
        click.secho(f"owner state serial unchanged: {before} -> {after}", fg="cyan")
    if result.operation == "plan":
        for change in result.changes:
            color = ACTION_COLORS.get(change["action"])
            click.secho(f"  {change['action']:<8} {change['address']}", fg=color)
    for name, value in sorted(result.outputs.items()):
        click.echo(f"  {name} = {value}")


def _pipeline(
    stage: str,
    via: str,
    lock_timeout: str,
    as_json: bool,
    no_preflight: bool,
    quiet: bool = False,
    allow_replace: bool = False,
) -> Pipeline:
    project = Project.load()
    run = StageRun(
        project,
        project.parse_stage(stage),
        reporter=Reporter(quiet=as_json, progress=not quiet),
        lock_timeout=lock_timeout,
    )
    return Pipeline(
        run, applier_for(via), live_preflight=not no_preflight, allow_replace=allow_replace
    )


@click.command()
@common_options
@click.option(
    "--allow-replace",
    is_flag=True,
    help="Let the deploy delete or replace the stage's guarded resources (an owner's or "
    "protected stage's Neon project and branch), which is refused (exit 3) otherwise.",
)
def deploy(
    stage: str,
    via: str,
    lock_timeout: str,
    as_json: bool,
    no_preflight: bool,
    quiet: bool,
    stop_timeout: str,
    allow_replace: bool,
) -> None:
    """Create or update a stage (a referencing stage needs its owner deployed first).

    Says its target first; on the cloud target a preflight checks the credentials before
    anything runs (exit 2 naming what to set, exit 1 when an API cannot be reached). A plan
    that would replace the owner's (or a protected stage's) project or branch is refused
    before anything is applied (exit 3), naming the attribute that forces it. Ctrl-C stops
    Terraform gracefully and exits 130 (SIGTERM: 143), the state lock released.

    Example: forkstage deploy --stage pr-147
    """
    pipeline = _pipeline(stage, via, lock_timeout, as_json, no_preflight, quiet, allow_replace)
    with interruptible(stop_timeout, f"forkstage deploy --stage {stage}"):
        result = pipeline.deploy()
    _report(result, as_json)


@click.command()
@common_options
def plan(
    stage: str,
    via: str,
    lock_timeout: str,
    as_json: bool,
    no_preflight: bool,
    quiet: bool,
    stop_timeout: str,
) -> None:
    """Show what a deploy of the stage would change, changing nothing.

    Example: forkstage plan --stage pr-147 --json
    """
    pipeline = _pipeline(stage, via, lock_timeout, as_json, no_preflight, quiet)
    with interruptible(stop_timeout, f"forkstage plan --stage {stage}"):
        result = pipeline.plan()
    _report(result, as_json)


@click.command()
@common_options
@click.option("--force", is_flag=True, help="Destroy a protected stage.")
@click.option(
    "--cascade",
    is_flag=True,
    help="Destroy the stages that reference this one first (each guarded as usual).",
)
@click.option(
    "--strict", is_flag=True, help="Fail (exit 3) when the stage has no state, instead of exit 0."
)
def destroy(
    stage: str,
    via: str,
    lock_timeout: str,
    as_json: bool,
    no_preflight: bool,
    quiet: bool,
    stop_timeout: str,
    force: bool,
    cascade: bool,
    strict: bool,
) -> None:
    """Destroy a stage's own resources; a referencing stage never touches its owner's.

    A stage without state is nothing to destroy (exit 0), so a PR's clean-up job stays green
    when its deploy never ran. An owner still referenced by stages with resources is refused
    (exit 3) unless --cascade: it is never left half-destroyed.

    Example: forkstage destroy --stage pr-147
    """
    pipeline = _pipeline(stage, via, lock_timeout, as_json, no_preflight, quiet)
    with interruptible(stop_timeout, f"forkstage destroy --stage {stage}"):
        result = pipeline.destroy(force=force, cascade=cascade, strict=strict)
    _report(result, as_json)


@click.command()
@stage_option
@click.option(
    "--lock-timeout",
    type=TerraformDuration(),
    default="0s",
    show_default=True,
    metavar="DURATION",
    help="Wait this long for another run's state lock (Terraform duration: 30s, 5m, 1h).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@no_preflight_option
@run_options
def reset(
    stage: str,
    lock_timeout: str,
    as_json: bool,
    no_preflight: bool,
    quiet: bool,
    stop_timeout: str,
) -> None:
    """Fork a preview's branch again from its owner's branch as it is now (Neon's "reset from
    parent"): the preview's own rows are gone, its migrations run again, the Worker keeps its
    URL. Through Terraform, so state stays the truth. Owner stages are refused (exit 3).

    Example: forkstage reset --stage pr-147
    """
    pipeline = _pipeline(stage, "engine", lock_timeout, as_json, no_preflight, quiet)
    with interruptible(stop_timeout, f"forkstage reset --stage {stage}"):
        result = pipeline.reset()
    _report(result, as_json)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``12h``, ``7d``, ``2w`` -> seconds."""
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in _UNITS or not text[:-1].isdigit():
        raise click.BadParameter(f"{text!r} is not a duration: use e.g. 30m, 12h or 7d")
    return int(text[:-1]) * _UNITS[text[-1]]


@click.command()
@click.option(
    "--older-than", metavar="DURATION", help="Prune stages unchanged for this long (e.g. 7d)."
)
@click.option(
    "--open", "open_", metavar="STAGES", help="Comma-separated stages still open; prune the rest."
)
@click.option("--dry-run", is_flag=True, help="Only list what would be destroyed.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@no_preflight_option
def prune(
    older_than: str | None, open_: str | None, dry_run: bool, as_json: bool, no_preflight: bool
) -> None:
    """Destroy referencing stages that are stale or whose pull requests are closed.

    Owner stages (staging, prod, dev_*) are never pruned.

    Example: forkstage prune --open pr-147,pr-150 --older-than 7d --dry-run
    """
    if not older_than and open_ is None:
        raise click.UsageError("say what to prune: --older-than DURATION and/or --open pr-1,pr-2")
    max_age = parse_duration(older_than) if older_than else None
    project = Project.load()
    keep = {s.strip() for s in (open_ or "").split(",") if s.strip()}
    for name in keep:
        project.parse_stage(name)
    if not dry_run:  # once, before the listing: each destroy then skips the API calls
        preflight(project.settings, live=not no_preflight)
    victims = prune_candidates(project, keep=keep if open_ is not None else None, max_age=max_age)
    results: list[dict[str, Any]] = []
    with interruptible("60s", "forkstage prune (again, with the same flags)"):
        _prune(project, victims, results, dry_run=dry_run, as_json=as_json)
    if as_json:
        click.echo(json.dumps(results, sort_keys=True))
    elif not victims:
        click.echo("nothing to prune")


def _prune(
    project: Project,
    victims: list[dict[str, str]],
    results: list[dict[str, Any]],
    *,
    dry_run: bool,
    as_json: bool,
) -> None:
    for victim in victims:
        destroyed = False
        if not dry_run:
            run = StageRun(
                project, project.parse_stage(victim["stage"]), reporter=Reporter(quiet=as_json)
            )
            pipeline = Pipeline(run, live_preflight=False)
            destroyed = not pipeline.destroy().nothing_to_destroy  # gone since the listing
        results.append({**victim, "destroyed": destroyed})
        if not as_json:
            verb = "would destroy" if dry_run else "destroyed" if destroyed else "already gone:"
            click.echo(f"{verb} {victim['stage']} ({victim['reason']})")
