"""`forkstage ci rehearse`: the rendered pipeline's own steps, run offline as CI would run them.

Jobs in CI's order (push to main: the owner stage previews fork from; pull request opened;
closed; the scheduled prune). Each ``run:`` / ``script:`` block runs with bash in a fresh copy of
the repository's tracked files, in a fresh virtualenv where the pipeline's own
``pip install`` line runs offline (``PIP_NO_INDEX``, ``--no-deps``, no build isolation: the
venv's ``.pth`` points at the running interpreter's site-packages for the dependencies).
The cloud configuration is the pipeline's; only three things are local, each named in the run's
``target:`` line or environment: stand-in providers (``FORKSTAGE_REHEARSAL_PROVIDERS``), the
"remote" S3 state server over TLS (``FORKSTAGE_REHEARSAL_STATE``, ``AWS_CA_BUNDLE``) and the
preflight's Neon/Cloudflare APIs (``forkstage.rehearse_fakes``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
import venv
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


@dataclass
class Step:
    """One step of one job: bash text, or an emulated action (``uses``)."""

    job: str
    name: str
    script: str = ""
    uses: str = ""
    env: dict[str, str] = field(default_factory=dict)
    condition: str = ""
    shell_opts: str = "-e"
    comment: bool = False
    workdir: str = "."  # GitHub: working-directory (or defaults.run's), from the checkout


@dataclass
class Result:
    job: str
    name: str
    code: int
    seconds: float
    output: str = ""
    skipped: bool = False  # GitHub: its `if:` was false (as CI shows a skipped step)


@dataclass
class Job:
    name: str
    event: str  # push | opened | closed | schedule
    env: dict[str, str]
    steps: list[Step]


# -- GitHub -----------------------------------------------------------------------------------

GITHUB_ORDER = (
    ("deploy-staging", "push"),
    ("deploy-preview", "opened"),
    ("destroy-preview", "closed"),
    ("prune", "schedule"),
)
GITLAB_ORDER = GITHUB_ORDER


def github_jobs(doc: Mapping[str, Any], *, pr_only: bool) -> list[Job]:
    jobs = []
    top_env = {k: str(v) for k, v in (doc.get("env") or {}).items()}
    default_dir = str(((doc.get("defaults") or {}).get("run") or {}).get("working-directory", "."))
    for name, event in GITHUB_ORDER:
        if pr_only and event in ("push", "schedule"):
            continue
        spec = doc["jobs"][name]
        steps = []
        for index, raw in enumerate(spec["steps"]):
            uses = str(raw.get("uses", ""))
            script = str(raw.get("run", ""))
            text = str((raw.get("with") or {}).get("script", ""))
            steps.append(
                Step(
                    job=name,
                    name=str(raw.get("name") or uses.split("@")[0] or f"step {index + 1}"),
                    script=script,
                    uses=uses,
                    env={k: str(v) for k, v in (raw.get("env") or {}).items()},
                    condition=str(raw.get("if", "")),
                    shell_opts="--noprofile --norc -eo pipefail" if raw.get("shell") else "-e",
                    comment="createComment" in text,
                    workdir=str(raw.get("working-directory") or default_dir),
                )
            )
        jobs.append(Job(name=name, event=event, env=dict(top_env), steps=steps))
    return jobs


def github_expr(expr: str, ctx: Mapping[str, str], outputs: Mapping[str, str]) -> str:
    """The few expressions the rendered workflow uses (secrets, vars, the event, step outputs)."""
    if expr.startswith(("secrets.", "vars.")):
        return ctx.get(expr.split(".", 1)[1], "")
    if expr.startswith("steps."):
        _, step_id, _, key = expr.split(".", 3)
        return outputs.get(f"{step_id}.{key}", "")
    known = {
        "github.event.pull_request.number": ctx["PR"],
        "github.event.pull_request.head.sha": "HEAD",
        "github.workspace": ctx["WORKSPACE"],
        "github.token": ctx.get("GH_TOKEN", "rehearsal-token"),
        "runner.os": "Linux",
    }
    if expr in known:
        return known[expr]
    raise ValueError(f"the rehearsal cannot evaluate ${{{{ {expr} }}}}")


def github_condition(cond: str, ctx: Mapping[str, str], outputs: Mapping[str, str]) -> bool:
    if not cond:
        return True
    match = re.fullmatch(r"(\S+)\s*==\s*'([^']*)'", cond.strip())
    if match is None:
        raise ValueError(f"the rehearsal cannot evaluate if: {cond}")
    return github_expr(match.group(1), ctx, outputs) == match.group(2)


# -- GitLab -----------------------------------------------------------------------------------


def gitlab_jobs(doc: Mapping[str, Any], *, pr_only: bool) -> list[Job]:
    jobs = []
    top = {k: str(v) for k, v in (doc.get("variables") or {}).items()}
    for name, event in GITLAB_ORDER:
        if pr_only and event in ("push", "schedule"):
            continue
        spec = dict(doc[name])
        base = doc.get(str(spec.get("extends", ""))) or {}
        merged = {**base, **spec}
        env = {**top, **{k: str(v) for k, v in (merged.get("variables") or {}).items()}}
        lines = [*(merged.get("before_script") or []), *(merged.get("script") or [])]
        steps = [
            Step(job=name, name=str(line).strip().splitlines()[0][:60], script=str(line))
            for line in lines
        ]
        jobs.append(Job(name=name, event=event, env=env, steps=steps))
    return jobs


# -- running ----------------------------------------------------------------------------------


def tracked_copy(repo: Path, dest: Path) -> Path:
    """A fresh copy of the repository's tracked files (what actions/checkout gives a job)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = repo / rel
        if src.is_symlink():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(os.readlink(src))
            continue
        if not src.is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return dest


def fresh_venv(folder: Path) -> Path:
    """A venv without pip or dev tools; its ``.pth`` names this interpreter's site-packages so the
    pipeline's ``pip install`` resolves offline with ``--no-deps``."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(folder)
    python = folder / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # this interpreter's site dirs (and those its own .pth files add): the dependencies
    dirs = [sysconfig.get_paths()["purelib"]]
    dirs += [p for p in sys.path if p.endswith("site-packages") and p not in dirs]
    Path(site, "zz-rehearsal-dependencies.pth").write_text("".join(f"{d}\n" for d in dirs))
    if not (folder / "bin" / "python3").exists():
        (folder / "bin" / "python3").symlink_to("python")
    return folder


def stand_in_tools(bindir: Path, *, open_prs: str) -> None:
    """``gh`` answering ``pr list`` with the open pull requests (the prune's only call)."""
    bindir.mkdir(parents=True, exist_ok=True)
    gh = bindir / "gh"
    gh.write_text(
        f"#!/bin/sh\n# forkstage ci rehearse: a local stand-in for gh\necho '{open_prs}'\n"
    )
    gh.chmod(0o755)


def clean_path(first: list[Path]) -> str:
    """PATH with ``first`` in front and no other virtualenv's or project's bin."""
    here = Path(sys.executable).parent
    kept = [
        p
        for p in os.environ.get("PATH", "").split(os.pathsep)
        if p and Path(p) != here and not p.endswith(("node_modules/.bin", ".venv/bin"))
    ]
    return os.pathsep.join([*(str(p) for p in first), *kept])


def run_job(
    job: Job,
    *,
    target: str,
    repo: Path,
    app_rel: str,
    work: Path,
    ctx: dict[str, str],
    runner_env: Mapping[str, str],
    report: Callable[[Result], None],
    stop_on_failure: bool = True,
) -> Iterator[Result]:
    """Run one job's steps in order in a fresh copy and a fresh venv; yield each result."""
    root = work / job.name
    checkout = tracked_copy(repo, root / "checkout")
    node_modules = repo / app_rel / "node_modules"
    if node_modules.exists() and not (checkout / app_rel / "node_modules").exists():
        # npm ci offline is impossible; the app's installed packages stand in for it
        (checkout / app_rel / "node_modules").symlink_to(node_modules.resolve())
    env_dir = fresh_venv(root / "venv")
    tools = root / "tools"
    stand_in_tools(tools, open_prs=ctx.get("OPEN_PRS", ""))
    files = {k: root / f"{k.lower()}.txt" for k in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")}
    for path in files.values():
        path.touch()
    ctx = {**ctx, "WORKSPACE": str(checkout), "COMMENT_FILE": str(root / "comment.md")}
    outputs: dict[str, str] = {}
    ci_vars = _ci_vars(target, ctx, files, checkout)
    # GitLab: one shell per job, starting at CI_PROJECT_DIR, so a `cd` carries over
    cwd, cwd_file = checkout, root / "cwd.txt"
    keep_cwd = f"trap {shlex.quote('pwd > ' + shlex.quote(str(cwd_file)))} EXIT\n"
    for index, step in enumerate(job.steps):
        started = time.monotonic()
        if target == "github":
            if not github_condition(step.condition, ctx, outputs):
                result = Result(job.name, step.name, 0, 0.0, "skipped (if: false)", True)
                report(result)
                yield result
                continue
            sub = lambda text: _EXPR.sub(lambda m: github_expr(m.group(1), ctx, outputs), text)  # noqa: E731
            step_env = {k: sub(v) for k, v in {**job.env, **step.env}.items()}
            cwd = checkout / step.workdir
        else:
            scope = {**ci_vars, **ctx, **job.env}
            step_env = {k: _expand(v, scope) for k, v in job.env.items()}
            sub = lambda text: keep_cwd + text  # noqa: E731
        if step.uses:
            code, out = 0, _emulate(step, checkout / app_rel, ctx)
        else:
            env = {
                **runner_env,
                **ci_vars,
                **step_env,
                "VIRTUAL_ENV": str(env_dir),
                "PATH": clean_path([env_dir / "bin", tools]),
            }
            script = root / f"step-{index + 1}.sh"
            script.write_text(sub(step.script))
            done = subprocess.run(
                ["bash", *step.shell_opts.split(), str(script)],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                check=False,
            )
            code, out = done.returncode, done.stdout
            outputs.update(_outputs(step, files["GITHUB_OUTPUT"]))
            if target == "gitlab" and cwd_file.is_file():
                cwd = Path(cwd_file.read_text().strip())
        result = Result(job.name, step.name, code, time.monotonic() - started, out)
        report(result)
        yield result
        if code != 0 and stop_on_failure:
            return


def _expand(value: str, env: Mapping[str, str]) -> str:
    return re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), m.group(0)), value)


def _ci_vars(
    target: str, ctx: Mapping[str, str], files: Mapping[str, Path], checkout: Path
) -> dict[str, str]:
    if target == "github":
        return {
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_REPOSITORY": "rehearsal/app",
            "GITHUB_WORKSPACE": str(checkout),
            **{k: str(v) for k, v in files.items()},
        }
    return {
        "CI": "true",
        "GITLAB_CI": "true",
        "CI_PROJECT_DIR": str(checkout),
        "CI_PROJECT_ID": "1",
        "CI_MERGE_REQUEST_IID": ctx["PR"],
        "CI_API_V4_URL": ctx.get("GITLAB_API", "http://127.0.0.1:9/api/v4"),
    }


def _outputs(step: Step, path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            found[key] = value
    step_id = "outputs" if "--github-output" in step.script else "destroy"
    return {f"{step_id}.{k}": v for k, v in found.items()}


def _emulate(step: Step, cwd: Path, ctx: Mapping[str, str]) -> str:
    """checkout = the fresh copy; setup-python/node = local interpreters; cache skipped; the
    comment script writes the comment body to a file; deployment statuses are not kept."""
    if step.comment:
        body = "<!-- forkstage-preview -->\n" + (cwd / "summary.md").read_text()
        Path(ctx["COMMENT_FILE"]).write_text(body)
        return f"comment body written to {ctx['COMMENT_FILE']}"
    return f"emulated: {step.uses.split('@')[0]}"
