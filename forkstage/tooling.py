"""What this machine must have before Terraform starts, named with the command to install it:
found after an apply has begun, a missing Miniflare leaves a stage half-made."""

from __future__ import annotations

import os
from collections.abc import Mapping

from cdk.settings import Settings
from forkstage.errors import BadInput


def tooling_problems(
    settings: Settings, *, cdktf: bool | str = False, environ: Mapping[str, str] | None = None
) -> list[str]:
    """What this machine lacks for the run, before Terraform starts: on the local target the
    local cloud's Node packages (Miniflare, found as the stand-ins will find it: the project's
    node_modules/.bin first on PATH) and the PostgreSQL server binaries; with ``cdktf`` (the
    plain cdktf path; "cdktn" for CDK Terrain's) the project's cdktf-cli (cdktn-cli)."""
    env = dict(os.environ if environ is None else environ)
    root = settings.root
    problems = []
    if settings.target == "local":
        from localcloud.live_workers import find_node_modules
        from localcloud.pg_binaries import PostgresNotInstalled, find_bindir
        from localcloud.workers import WorkerError

        node_bin = root / "node_modules" / ".bin"
        path = os.pathsep.join([str(node_bin), env.get("PATH", "")])
        try:
            find_node_modules({**env, "PATH": path})
        except WorkerError:
            problems.append(
                f"the local cloud's Node packages (Miniflare): run `npm install` in {root}"
            )
        try:
            find_bindir(environ=env)
        except PostgresNotInstalled:
            problems.append(
                "the PostgreSQL server binaries (initdb, pg_ctl): install PostgreSQL "
                "(Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql)"
            )
    cli = cdktf if isinstance(cdktf, str) else "cdktf"
    if cdktf and not (root / "node_modules" / ".bin" / cli).exists():
        problems.append(f"{cli}-cli (npx {cli}, --via {cli}): run `npm install` in {root}")
    return problems


def check_tooling(
    settings: Settings, *, cdktf: bool | str = False, environ: Mapping[str, str] | None = None
) -> None:
    """BadInput (exit 2) naming what to install; nothing has run yet."""
    problems = tooling_problems(settings, cdktf=cdktf, environ=environ)
    if problems:
        raise BadInput("missing " + "; ".join(problems))
