"""The CLI's commands, one module per group of commands; options they share live here.

Command modules parse flags, call the library and print; they never import each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def _project_stages() -> str:
    """The stage classes of the project around the working folder, for ``--stage``'s help."""
    from cdk.settings import SettingsError, load_settings
    from forkstage.engine import find_project_root

    root = find_project_root()
    if root is None:
        return "staging, prod, pr-<number>, dev_<name>, ... (the project's [stages])"
    try:
        return load_settings(root).stage_classes.describe()
    except SettingsError:
        return "one of forkstage.toml's [stages]"


class StageOption(click.Option):
    """``--stage``: its help names this project's stage classes, and a stage given without the
    option (``forkstage deploy pr-1``) is answered with the option to use, not "Missing option"."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        self.help = f"Stage name: {_project_stages()}."
        return super().get_help_record(ctx)

    def handle_parse_result(
        self, ctx: click.Context, opts: Mapping[str, Any], args: list[str]
    ) -> tuple[Any, list[str]]:
        value, rest = super().handle_parse_result(ctx, opts, args)
        if value is None or value is getattr(click.core, "UNSET", None):  # absent
            extra = [a for a in rest if not a.startswith("-")]
            if extra:
                raise click.UsageError(
                    f"the stage is an option: use --stage {extra[0]} (stages: {_project_stages()})",
                    ctx,
                )
            raise click.UsageError(f"--stage is required (stages: {_project_stages()})", ctx)
        return value, rest


def stage_option(func: F) -> F:
    """``--stage S`` (required), validated by the command so the message is ours."""
    return click.option(
        "--stage",
        "-s",
        cls=StageOption,
        required=False,
        metavar="STAGE",
        help="Stage name (the project's [stages]).",
    )(func)
