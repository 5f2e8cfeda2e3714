"""``forkstage ci``: pipelines that deploy a preview stage per pull request, rendered for a CI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from forkstage.ci import TARGETS, CiOptionError, CiOptions, is_generated, render
from forkstage.ci.options import check_stage_classes
from forkstage.ci.project import (
    NotInRepository,
    default_install,
    project_options,
    repository_root,
)
from forkstage.context import Project
from forkstage.errors import BadInput, Refused


class _Target(click.Choice):
    """click.Choice whose error is one line (exit 2), not a usage screen: CI logs stay readable."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            raise BadInput(
                f"unknown CI target {value!r}: choose {' or '.join(self.choices)}"
            ) from None


@click.group()
def ci() -> None:
    """CI pipelines that give every pull request its own preview stage.

    Example: forkstage ci render github --out .
    """


@ci.command("render")
@click.argument("target", type=_Target(TARGETS), metavar="github|gitlab")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the files under this folder (the repository root); default: print them.",
)
@click.option("--force", is_flag=True, help="Overwrite files that forkstage did not generate.")
@click.option(
    "--stage-prefix", default="pr-", show_default=True, help="Preview stage = prefix + PR number."
)
@click.option(
    "--owner-stage",
    default="staging",
    show_default=True,
    help="Stage deployed from the main branch.",
)
@click.option(
    "--main-branch",
    default="main",
    show_default=True,
    help="Branch whose pushes deploy the owner stage.",
)
@click.option(
    "--python", "python_version", default="3.11", show_default=True, help="Python version in CI."
)
@click.option(
    "--node", "node_version", default="22", show_default=True, help="Node.js major version in CI."
)
@click.option(
    "--image",
    default="",
    help="GitLab job image, pinned by tag or digest (Python 3, Node, curl); "
    "default: nikolaik/python-nodejs:python<python>-nodejs<node>.",
)
@click.option(
    "--test-command",
    default="",
    help="Run after each preview deploy with DATABASE_URL, DATABASE_URL_POOLED and PREVIEW_URL "
    "set (one line, e.g. 'npm test'); default: no test step.",
)
def render_command(
    target: str,
    out: Path | None,
    force: bool,
    stage_prefix: str,
    owner_stage: str,
    main_branch: str,
    python_version: str,
    node_version: str,
    image: str,
    test_command: str,
) -> None:
    """Render the preview pipeline for GitHub Actions or GitLab CI.

    Pull requests deploy <prefix><number> to the cloud target and destroy it when closed;
    pushes to the main branch deploy the owner stage; a nightly run prunes stages of closed
    pull requests. Files carry a marker line so re-rendering updates them in place.

    Example: forkstage ci render github --out .

    Example: forkstage ci render gitlab --main-branch trunk --python 3.12

    Example: forkstage ci render github --test-command 'npm test'

    Inside a project the jobs install forkstage from its `[ci] install`, run in the app's
    folder (which may be a subfolder of the repository) and key their caches on its files.
    """
    project = Project.find()  # outside a project: the defaults (forkstage.toml at the root)
    try:
        if project is not None:
            # paths in the jobs are relative to the project's repository, wherever --out is
            repo = repository_root(project.root) or project.root
            derived = project_options(project.settings, repo)
        else:
            derived = {"install": default_install()}
        options = CiOptions(
            stage_prefix=stage_prefix,
            owner_stage=owner_stage,
            main_branch=main_branch,
            python=python_version,
            node=node_version,
            image=image,
            test_command=test_command,
            **derived,
        )
        if project is not None:
            # a pipeline deploying stages its project refuses would fail on every pull request
            check_stage_classes(options, project.settings.stage_classes)
    except (CiOptionError, NotInRepository) as exc:
        raise BadInput(str(exc)) from None
    files = render(target, options=options)
    if out is None:
        for path, content in files.items():
            click.echo(f"# path: {path}")
            click.echo(content, nl=False)
        return
    _write(files, out, force=force)


def _write(files: dict[str, str], out: Path, *, force: bool) -> None:
    """Check every destination first, so a refusal leaves all files untouched."""
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} is a file: give the repository's folder, e.g. --out .")
    for rel in files:
        dest = out / rel
        if dest.is_dir():
            raise Refused(f"{dest} is a folder: move it away, then render again")
        if dest.exists() and not force and not is_generated(_first_line(dest)):
            raise Refused(
                f"{dest} exists and was not generated by forkstage: "
                "move it away or pass --force to overwrite it"
            )
    for rel, content in files.items():
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        tmp.write_text(content, encoding="utf-8")
        tmp.replace(dest)
        click.echo(f"wrote {dest}")


def _first_line(path: Path) -> str:
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        return handle.readline()


@ci.command("rehearse")
@click.argument("target", type=_Target(TARGETS), metavar="github|gitlab")
@click.option("--pr", "pr", type=int, default=1, show_default=True, help="Pull request number.")
@click.option(
    "--pr-only", is_flag=True, help="Only the pull-request jobs (opened, closed): no owner deploy."
)
@click.option(
    "--env-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="KEY=VALUE lines: the jobs' secrets and variables (default: generated for the fakes).",
)
@click.option(
    "--work",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder for the copies, venvs and logs (default: a new temporary folder).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the outcome as one JSON document on stdout (the step lines go to stderr).",
)
def rehearse_command(
    target: str, pr: int, pr_only: bool, env_file: Path | None, work: Path | None, as_json: bool
) -> None:
    """Run the rendered pipeline's own steps offline, as CI would, before pushing a change.

    Push to main (the owner stage), pull request opened, closed, the scheduled prune: each
    run:/script: block with bash in a fresh copy of the tracked files and a fresh venv where the
    pipeline's pip install runs offline (--no-deps, no build isolation, dependencies from this
    interpreter's site-packages). Local only: stand-in providers (FORKSTAGE_REHEARSAL_PROVIDERS),
    a TLS state server, fake Neon/Cloudflare/GitLab APIs. Between jobs it checks that the
    preview Worker answers, and that the pull request's jobs leave the owner stage's state
    serial unchanged. Stops at the first failing step or check; exit 0 only when every one
    passed, 1 when one failed, 2 for bad input.

    --json prints {"ok", "target", "work", "seconds", "steps": [{"job", "step", "code",
    "seconds", "skipped", "output" (its tail)}], "environment_url", "comment_file", "comment",
    "worker": {"url", "local_url", "status", "body"}, "staging_serial": {"before", "after"}}.

    Example: forkstage ci rehearse github --pr 7

    Example: forkstage ci rehearse gitlab --json > rehearsal.json
    """
    import json
    import tempfile
    import time

    from forkstage.rehearse import Result
    from forkstage.rehearse_run import rehearse

    project = Project.find()
    if project is None:
        raise BadInput("not in a forkstage project: run it in the app's folder (forkstage.toml)")
    repo = repository_root(project.root)
    if repo is None:
        raise BadInput(f"{project.root} is not in a git repository: the jobs check out its files")
    try:
        options = CiOptions(**project_options(project.settings, repo))
    except CiOptionError as exc:
        raise BadInput(str(exc)) from None
    files = render(target, options=options)
    folder = work or Path(tempfile.mkdtemp(prefix="forkstage-rehearse-"))
    folder.mkdir(parents=True, exist_ok=True)
    click.echo(f"rehearsing {target} in {folder}", err=as_json)
    started = time.monotonic()

    def report(result: Result) -> None:
        code = "skip" if result.skipped else result.code
        line = f"{code:>4}  {result.seconds:7.1f}s  {result.job}: {result.name}"
        click.echo(line, err=as_json)
        if result.code != 0:
            click.echo(result.output.rstrip()[-4000:], err=as_json)

    outcome = rehearse(
        target,
        files=files,
        repo=repo,
        app_rel=str(project.root.resolve().relative_to(repo.resolve())),
        work=folder,
        pr=pr,
        pr_only=pr_only,
        env_file=env_file,
        report=report,
        owner=options.owner_stage,
    )
    seconds = time.monotonic() - started
    if as_json:
        steps = [
            {"job": r.job, "step": r.name, "code": r.code, "seconds": round(r.seconds, 1)}
            | {"skipped": r.skipped, "output": r.output[-4000:]}
            for r in outcome.results
        ]
        doc = {
            "ok": outcome.ok,
            "target": target,
            "work": str(folder),
            "seconds": round(seconds, 1),
            "steps": steps,
            "environment_url": outcome.url,
            "comment_file": outcome.comment_file,
            "comment": outcome.comment,
            "worker": outcome.worker,
            "staging_serial": outcome.staging_serial,
        }
        click.echo(json.dumps(doc, indent=2))
        if not outcome.ok:
            raise SystemExit(1)
        return
    click.echo(f"environment url: {outcome.url or '(none)'}")
    click.echo("comment body:")
    click.echo(outcome.comment or "(none)")
    verdict = "passed" if outcome.ok else "FAILED"
    click.echo(f"rehearsal {verdict} in {seconds:.0f}s")
    if not outcome.ok:
        raise SystemExit(1)
