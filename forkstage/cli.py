"""The ``forkstage`` command line: one entry point for CI pipelines and people.

Sub-commands live in their own modules and are imported only when asked for, so `--help`, a
synth or a CI step does not pay for boto3, psycopg or Miniflare's helpers it does not use.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import re
from pathlib import Path

import click

from forkstage.errors import ForkstageError

EPILOG = (
    "Exit codes: 0 ok, 1 the operation failed, 2 bad usage or input, 3 refused by a guard, "
    "4 an already-applied migration was edited (migrate), 130/143 interrupted (SIGINT/SIGTERM)."
)

# command name -> (module, attribute) of the command or group.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("forkstage.commands.init", "init"),
    "synth": ("forkstage.commands.synth", "synth"),
    "bundle": ("forkstage.commands.synth", "bundle"),
    "deploy": ("forkstage.commands.stage_ops", "deploy"),
    "plan": ("forkstage.commands.stage_ops", "plan"),
    "destroy": ("forkstage.commands.stage_ops", "destroy"),
    "reset": ("forkstage.commands.stage_ops", "reset"),
    "prune": ("forkstage.commands.stage_ops", "prune"),
    "unlock": ("forkstage.commands.unlock", "unlock_cmd"),
    "stages": ("forkstage.commands.info", "stages"),
    "outputs": ("forkstage.commands.info", "outputs"),
    "summary": ("forkstage.commands.info", "summary"),
    "env": ("forkstage.commands.info", "env_cmd"),
    "local": ("forkstage.commands.local", "local"),
    "ci": ("forkstage.commands.ci", "ci"),
    "providers": ("forkstage.commands.providers", "providers"),
    "backend": ("forkstage.commands.backend", "backend"),
    "migrate": ("forkstage.commands.migrate", "migrate"),
    "migrations": ("forkstage.commands.migrate", "migrations"),
    "schema-diff": ("forkstage.commands.schema", "schema_diff"),
}


# Commands that print a richer JSON document of their own when they fail with --json.
OWN_JSON_ERRORS = frozenset({("migrate",), ("migrations",)})


def command_doc(name: str) -> str | None:
    """The docstring of a command's function, read from its module's source (None when it is
    not a plain ``def name(...):`` with a docstring)."""
    module_name, attr = COMMANDS[name]
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.origin:
        return None
    try:
        source = Path(spec.origin).read_text(encoding="utf-8")
    except OSError:
        return None
    found = re.search(
        rf'^def {re.escape(attr)}\((?:.|\n)*?\)(?: -> [^:\n]+)?:\n\s+(?:r?"""((?:.|\n)*?)""")',
        source,
        re.MULTILINE,
    )
    if found is None:
        return None
    doc = inspect.cleandoc(found.group(1))
    return doc.split("\f", 1)[0]


def command_error(error: ForkstageError) -> click.ClickException:
    """A library error on its way out: click prints ``Error: <message>`` and exits with its code."""
    kind = type(type(error).__name__, (click.ClickException,), {"exit_code": error.exit_code})
    return kind(error.message)


def _leaf(
    group: click.Group, ctx: click.Context, args: list[str]
) -> tuple[tuple[str, ...], click.Command | None, list[str]]:
    """The command the arguments name (through nested groups), its path and its arguments."""
    path: tuple[str, ...] = ()
    command: click.Command | None = group
    while isinstance(command, click.Group):
        found = next((i for i, a in enumerate(args) if not a.startswith("-")), None)
        if found is None:
            return path, None, []
        name = args[found]
        command = command.get_command(ctx, name)
        path, args = (*path, name), args[found + 1 :]
    return path, command, args


def _asked_for_json(command: click.Command | None, args: list[str]) -> bool:
    """Whether the command has a ``--json`` flag (or ``--format json``) and it was given."""
    if command is None:
        return False
    args = args[: args.index("--")] if "--" in args else args
    opts = {opt for param in command.params for opt in param.opts}
    if "--json" in opts and "--json" in args:
        return True
    if "--format" in opts:
        pairs = zip(args, [*args[1:], ""], strict=True)
        return "--format=json" in args or ("--format", "json") in pairs
    return False


class LazyGroup(click.Group):
    """A group whose commands are imported on first use; library errors become exit codes here.

    With ``--json`` a failure also prints ``{"error": ..., "exit_code": N}`` on stdout, so a CI
    step that parses the output gets a document either way.
    """

    def invoke(self, ctx: click.Context) -> object:
        args = [*ctx._protected_args, *ctx.args]
        error: click.ClickException
        try:
            return super().invoke(ctx)
        except ForkstageError as exc:
            error, own = command_error(exc), True
        except click.ClickException as exc:
            error, own = exc, False
        path, command, rest = _leaf(self, ctx, args)
        if _asked_for_json(command, rest) and not (own and path in OWN_JSON_ERRORS):
            doc = {"error": error.format_message(), "exit_code": error.exit_code}
            click.echo(json.dumps(doc, sort_keys=True))
        raise error from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help`` without importing any command module: each line is
        read from its function's docstring in the source (as click would show it)."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            doc = command_doc(name)
            if doc is None:  # not found in the source: ask the command itself
                command = self.get_command(ctx, name)
                rows.append((name, command.get_short_help_str(limit) if command else ""))
            else:
                # click's own shortening (click.utils' public name is deprecated)
                rows.append((name, click.Command(name, help=doc).get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, attr = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(module_name), attr)
        return command


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="forkstage")
def main() -> None:
    """Preview environments per pull request on Neon + Cloudflare, with Terraform.

    Example: forkstage deploy --stage pr-147
    """
