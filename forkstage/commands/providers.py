"""``forkstage providers``: refresh the schema snapshots the bindings are generated from."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import click

from cdk.providers.pins import PINS
from cdk.providers.refresh import DIRECT_INSTALLATION, RefreshError, Terraform, refresh
from forkstage.context import Project
from forkstage.engine import run_terraform, terraform_env
from forkstage.errors import BadInput, Failed


def direct_engine(home: Path) -> Terraform:
    """The pinned engine, installing providers straight from their registry (no local mirror)."""
    env = terraform_env(home, provider_installation=DIRECT_INSTALLATION)

    def terraform(
        args: Sequence[str], *, cwd: Path, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        return run_terraform(args, cwd=cwd, env=env, timeout=timeout)

    return terraform


@click.group()
def providers() -> None:
    """The Neon and Cloudflare schema snapshots behind the generated bindings.

    Example: forkstage providers refresh neon
    """


@providers.command("refresh")
@click.argument("name", metavar="|".join(PINS))
def refresh_cmd(name: str) -> None:
    """Rewrite cdk/providers/schemas/<name>.json from the real provider (needs its registry).

    Then run `make generate` and review the diff.

    Example: forkstage providers refresh cloudflare
    """
    pin = PINS.get(name)
    if pin is None:
        raise BadInput(f"unknown provider {name!r}: use {'|'.join(PINS)}")
    Project.load()  # a maintainer's command, run in a project (forkstage's own checkout)
    with tempfile.TemporaryDirectory(prefix="forkstage-refresh-home-") as home:
        try:
            path = refresh(pin, direct_engine(Path(home)))
        except RefreshError as exc:
            raise Failed(f"refresh {pin.name}: {exc}") from None
    click.echo(f"wrote {path}; now run `make generate` and review the diff")
