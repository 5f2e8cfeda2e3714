"""Run the project's cdktf app: the one program that writes a stage's Terraform JSON."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from forkstage.context import Project
from forkstage.errors import BadInput, Failed
from forkstage.shadow import shadowing

DEFAULT_OUTPUT = "cdktf.out"


def run_app(
    project: Project,
    stage: str,
    out: Path,
    *,
    env: dict[str, str],
    prepared: bool = True,
) -> Path:
    """Run the project's cdktf app (cdktf.json "app") exactly as `npx cdktf synth` would.

    The same program writes the same JSON whichever tool starts it; a named stage is always
    synthesized alone.
    ``prepared``: forkstage runs Terraform in ``out`` itself, with the stage's environment, so
    the app is told so (``FORKSTAGE_PREPARED``) and writes no gate file; ``forkstage synth``
    passes False and the app sees the caller's shell as `npx cdktf synth` would.
    """
    app = project.app_command()
    problem = shadowing(project.root)
    if problem:
        raise BadInput(problem)
    argv = app_argv(app)
    out.mkdir(parents=True, exist_ok=True)
    env = {**env, "FORKSTAGE_STAGE": stage, "CDKTF_OUTDIR": str(out)}
    env.pop("STAGE", None)
    if prepared:
        env["FORKSTAGE_PREPARED"] = stage
    try:
        proc = subprocess.run(
            argv,
            cwd=project.root,
            env=env,
            text=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except OSError as exc:
        raise BadInput(
            f'the app command {app!r} (cdktf.json "app") cannot start: {exc.strerror or exc}'
        ) from None
    output = (proc.stderr or proc.stdout).strip()
    last = output.splitlines()[-1] if output else ""
    if proc.returncode == 2 and last.startswith("error: "):
        raise BadInput(last.removeprefix("error: "))  # the app's own one-line refusal
    if proc.returncode != 0:
        raise Failed(f"synth failed: {output}")
    path = out / "stacks" / f"stack-{stage}" / "cdk.tf.json"
    if not path.is_file():
        raise Failed(f"synth wrote no stack-{stage}: is {app!r} a forkstage app?")
    return path


def app_argv(app: str) -> list[str]:
    """The app command as argv; ``python``/``python3`` is the interpreter forkstage runs in, so
    the app imports the same forkstage wherever it was installed (no `.venv` assumed)."""
    try:
        argv = shlex.split(app)
    except ValueError as exc:
        raise BadInput(f'cdktf.json "app" {app!r} is not a command line: {exc}') from None
    if not argv:
        raise BadInput('cdktf.json has an empty "app" command: use e.g. "python3 main.py"')
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


def cdktf_stack_dir(project: Project, stage: str) -> Path:
    """The folder a plain `npx cdktf deploy` of ``stage`` runs Terraform in (cdktf.json's
    "output", else cdktf.out)."""
    output = DEFAULT_OUTPUT
    try:
        configured = json.loads((project.root / "cdktf.json").read_text()).get("output")
    except (OSError, ValueError, AttributeError):
        configured = None
    if isinstance(configured, str) and configured.strip():
        output = configured
    return (project.root / output / "stacks" / f"stack-{stage}").resolve()


def required_sources(config: Path) -> set[str]:
    """The fully qualified provider addresses a synthesized cdk.tf.json requires."""
    try:
        doc = json.loads(config.read_text())
    except (OSError, ValueError):
        return set()
    required = doc.get("terraform", {}).get("required_providers", {})
    sources = {str(p.get("source", "")) for p in required.values() if isinstance(p, dict)}
    return {s if s.count("/") == 2 else f"registry.terraform.io/{s}" for s in sources if s}


def prepare_cdktf_folder(project: Project, stage: str, config: Path) -> Path:
    """Ready the folder a plain `npx cdktf deploy` of ``stage`` runs Terraform in.

    cdktf-cli runs ``terraform providers lock`` (the registry, even for mirrored providers)
    unless a lock file there pins every required provider: on the local target it gets the lock
    file of the stand-ins ``config`` (the stage's synthesized cdk.tf.json) requires; on the
    cloud target a stand-in one is removed, so the real providers are locked as usual.
    """
    from localcloud.registry import drop_lock_file, write_lock_file

    folder = cdktf_stack_dir(project, stage)
    sources = required_sources(config)
    if project.settings.target == "local" and sources:
        write_lock_file(folder, project.home, sources)
    else:
        drop_lock_file(folder, project.home)
    return folder
