"""What a pipeline needs to know about the project it deploys, read from the repository.

The pipeline installs forkstage from ``[ci] install``, runs in the app's folder (an app may live
in a subfolder such as ``infra/``), and keys its caches on files that exist in that repository.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

from cdk.settings import Settings


class NotInRepository(ValueError):
    """The project is not inside the folder the pipelines are written to."""


def default_install() -> str:
    """``forkstage==<this version>``: what a project without ``[ci] install`` gets."""
    try:
        return f"forkstage=={metadata.version('forkstage')}"
    except metadata.PackageNotFoundError:
        return "forkstage"


def repository_root(start: Path) -> Path | None:
    here = start.resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return None


def project_options(settings: Settings, repo: Path) -> dict[str, Any]:
    """CiOptions fields for the project at ``settings.root`` in the repository at ``repo``."""
    root, repo = settings.root.resolve(), repo.resolve()
    if not root.is_relative_to(repo):
        raise NotInRepository(
            f"the project {root} is not inside {repo}: render into its repository's root "
            "(--out <repository>)"
        )
    app_dir = root.relative_to(repo).as_posix() or "."
    prefix = "" if app_dir == "." else f"{app_dir}/"
    install = settings.ci_install or default_install()
    pip_keys = [f"{prefix}forkstage.toml"]  # [ci] install lives there
    source = install if install.startswith((".", "/")) else ""
    if source and (repo / source / "pyproject.toml").is_file():
        # forkstage installed from a path in this repository: its own dependencies
        pip_keys.append((Path(source) / "pyproject.toml").as_posix().removeprefix("./"))
    plugin_keys = [f"{prefix}forkstage.toml"]
    pins = Path(source) / "cdk" / "providers" / "pins.py"
    if source and (repo / pins).is_file():
        plugin_keys.append(pins.as_posix().removeprefix("./"))  # the pins, in this repository
    lock = f"{prefix}package-lock.json"
    return {
        "install": install,
        "app_dir": app_dir,
        "pip_key_files": tuple(pip_keys),
        "plugin_key_files": tuple(plugin_keys),
        "node_lock": lock if (repo / lock).is_file() else "",
    }
