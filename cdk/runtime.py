"""Which CDK runtime an app runs on: cdktf 0.21 (the default) or CDK Terrain, cdktn 0.24.

One place decides: ``[app] cdk`` in the app's ``forkstage.toml`` (the nearest one from the folder
the app runs in upwards: cdktf.json's folder, where cdktf-cli, cdktn-cli and forkstage all start
it). ``FORKSTAGE_CDK`` overrides it for one run (the tests and bench/synth.py run this repository's
app on both). Read without importing either runtime, so the jsii kernel can start loading the
right assembly while Python imports it (cdk/kernel.py), and so forkstage can check an app before
running it.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, cast

Runtime = Literal["cdktf", "cdktn"]
RUNTIMES: tuple[Runtime, ...] = ("cdktf", "cdktn")
DEFAULT: Runtime = "cdktf"
ENV = "FORKSTAGE_CDK"
SETTINGS_FILE = "forkstage.toml"
# What to install for each (forkstage depends on cdktf; cdktn comes with the extra).
INSTALL = {"cdktf": "pip install 'cdktf==0.21.0'", "cdktn": "pip install 'forkstage[cdktn]'"}


class RuntimeChoiceError(ImportError):
    """The chosen runtime is unknown or not installed, or the app imports the other one."""


def settings_file(start: Path | None = None) -> Path | None:
    """The nearest forkstage.toml from ``start`` (default: the working folder) upwards."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / SETTINGS_FILE).is_file():
            return folder / SETTINGS_FILE
    return None


def configured(
    start: Path | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Runtime, str]:
    """The runtime asked for and where that was said (for messages)."""
    env = os.environ if environ is None else environ
    value, where = env.get(ENV, ""), ENV
    if not value:
        path = settings_file(start)
        value, where = "", "the default"
        if path is not None:
            try:
                app = tomllib.loads(path.read_text()).get("app", {})
            except (OSError, tomllib.TOMLDecodeError):
                app = {}  # the settings loader reports a broken file with its own message
            if isinstance(app, dict) and "cdk" in app:
                value, where = app["cdk"], f"{path.name} [app] cdk"
    if not value:
        return DEFAULT, where
    if value not in RUNTIMES:
        raise RuntimeChoiceError(f'{where} must be "cdktf" or "cdktn", not {value!r}')
    return cast(Runtime, value), where


def installed(runtime: str) -> bool:
    return importlib.util.find_spec(runtime) is not None


_settled: list[Runtime] = []  # this process's runtime, once cdk.core or check_app settled it


def chosen() -> Runtime:
    """The runtime of this process: configured, and installed (else one line saying what to do).

    Settled by ``check_app`` when the app runs through forkstage.app.run (from the app's folder),
    else on first use from the working folder.
    """
    if not _settled:
        runtime, where = configured()
        if not installed(runtime):
            raise RuntimeChoiceError(
                f"this app runs on {runtime} ({where}) but {runtime} is not installed: "
                f"{INSTALL[runtime]}"
            )
        _settled.append(runtime)
    return _settled[0]


# --------------------------------------------------------------------------- the app's imports
# forkstage's own library: cdk.core imports whichever runtime was chosen, by design.
LIBRARY = ("cdk", "forkstage")
_STACK_REF = re.compile(r"^([A-Za-z_][\w.]*):[A-Za-z_]\w*$")


def _local_module(root: Path, name: str) -> Path | None:
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_runtimes(root: Path, entry: Path) -> dict[str, Path]:
    """Each runtime the app's own code imports directly, with the first file that does.

    The app's code: ``entry`` (the script cdktf.json's "app" runs) and the modules of ``root`` it
    imports (or names as ``"module:Class"``), transitively, except forkstage's own packages.
    """
    found: dict[str, Path] = {}
    todo, seen = [entry], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        try:
            tree = ast.parse(path.read_text(errors="replace"))
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = _STACK_REF.findall(node.value)  # run("stacks.app:AppStack", ...)
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in RUNTIMES:
                    found.setdefault(top, path)
                elif top not in LIBRARY and (local := _local_module(root, name)) is not None:
                    todo.append(local)
    return found


def check_app(root: Path, entry: Path, environ: Mapping[str, str] | None = None) -> Runtime:
    """The app's runtime, which becomes this process's, or RuntimeChoiceError (one line) when its
    imports or the installed packages do not match it: an app runs on one runtime, and a
    construct of one cannot live in an app of the other."""
    runtime, where = configured(root, environ)
    imports = imported_runtimes(root, entry) if entry.is_file() else {}
    other = next((name for name in imports if name != runtime), None)
    if other is not None:
        file = imports[other].relative_to(root)
        if not installed(other):
            raise RuntimeChoiceError(
                f"{file} imports {other}, which is not installed, and the app runs on {runtime} "
                f'({where}): {INSTALL[other]} and set [app] cdk = "{other}" in {SETTINGS_FILE}, '
                "or import from cdk.core"
            )
        raise RuntimeChoiceError(
            f"{file} imports {other} but the app runs on {runtime} ({where}): import from "
            f'cdk.core (or {runtime}), or set [app] cdk = "{other}" in {SETTINGS_FILE}'
        )
    if not installed(runtime):
        raise RuntimeChoiceError(
            f"this app runs on {runtime} ({where}) but {runtime} is not installed: "
            f"{INSTALL[runtime]}"
        )
    if not _settled:
        _settled.append(runtime)
    return runtime
