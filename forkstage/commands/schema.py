"""``forkstage schema-diff``: a stage's database schema against its owner's, for review."""

from __future__ import annotations

import sys

import click

from forkstage.commands import stage_option
from forkstage.context import Project
from forkstage.schemadiff import StagePair, render


@click.command(name="schema-diff")
@stage_option
@click.option(
    "--against",
    metavar="STAGE",
    default=None,
    help="The stage to compare with (default: the stage's owner, e.g. staging).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "markdown", "json"]),
    default="text",
    show_default=True,
)
@click.option(
    "--exit-code", is_flag=True, help="Exit 1 when there are differences (like git diff)."
)
def schema_diff(stage: str, against: str | None, fmt: str, exit_code: bool) -> None:
    """Show what a stage's database schema adds, removes or changes against its owner's.

    Tables, columns (type, default, not null), indexes, constraints, views, functions and
    enums, read from the catalog with the stage's own connection details (a fork inherits its
    parent's role). Exits 0 whether or not they differ, unless --exit-code.

    Example: forkstage schema-diff --stage pr-147 --against staging --format markdown
    """
    result, _ = StagePair.resolve(Project.load(), stage, against).compare()
    click.echo(render(result, fmt))
    if exit_code and not result.empty:
        sys.exit(1)
