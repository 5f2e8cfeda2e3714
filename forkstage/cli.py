"""The ``forkstage`` command line: one entry point for CI pipelines and people.

Sub-commands live in their own modules and are attached here; heavy imports (cdktf, boto3,
psycopg) happen inside the commands so that ``--help`` and simple commands stay fast.
"""

from __future__ import annotations

import importlib

import click

EPILOG = (
    "Exit codes: 0 ok, 1 the operation failed, 2 bad usage or input, 3 refused by a guard, "
    "4 an already-applied migration was edited (migrate)."
)

# (module, attribute) of every command or group attached to the top-level group.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("forkstage.commands.synth", "synth"),
    ("forkstage.commands.stage_ops", "deploy"),
    ("forkstage.commands.stage_ops", "plan"),
    ("forkstage.commands.stage_ops", "destroy"),
    ("forkstage.commands.stage_ops", "prune"),
    ("forkstage.commands.info", "stages"),
    ("forkstage.commands.info", "outputs"),
    ("forkstage.commands.info", "summary"),
    ("forkstage.commands.info", "env_cmd"),
    ("forkstage.commands.local", "local"),
    ("forkstage.commands.ci", "ci"),
    ("backend.cli", "backend"),
    ("forkstage.migrator.cli", "migrate"),
    ("forkstage.migrator.cli", "migrations"),
)


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="forkstage")
def main() -> None:
    """Preview environments per pull request on Neon + Cloudflare, with Terraform.

    Example: forkstage deploy --stage pr-147
    """


def _attach() -> None:
    for module_name, attr in COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # a part not built yet must not break the others
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        main.add_command(getattr(module, attr))


_attach()


def _extend_backend_group() -> None:
    """`backend start|stop` manage the background server; they live beside the wrapper."""
    from forkstage.commands.backend_ctl import start, stop

    group = main.commands.get("backend")
    if isinstance(group, click.Group):
        group.add_command(start)
        group.add_command(stop)


_extend_backend_group()
