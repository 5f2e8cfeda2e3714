"""Preview-environment speed on the local cloud: a pr-N stage against a stage with its own project.

The product's claim is that forking staging's branch makes a PR preview cheap to create and to
throw away. This measures it phase by phase, in one run on this machine, with staging already up:
`forkstage deploy --stage pr-N` (on the local target it ends by serving the stage's Worker until
it answers), a request through that Worker, `forkstage destroy`; and,
interleaved in the same run, the same cycle for `dev_benchN` stages that each create a Neon
project of their own (the "one project per PR" approach the product replaces) as the baseline.

The migrations step is the `terraform_data.migrations_*` resource inside `terraform apply`:
its time comes from the `apply_start`/`apply_complete` timestamps of Terraform's `-json` events.
The CLI keeps no copy of those, so each command runs through this file's `--cli` mode, which is
the `forkstage` console script plus an observer (``forkstage.report.observing``) that keeps a
copy of every `apply` run's stdout.

Then the footprint of many previews: PR stages deployed one after another beside staging, with
the proportional set size (PSS, /proc/PID/smaps_rollup) of every process of the local cloud
(state server, PostgreSQL servers and their workers, Miniflare/workerd, endpoint proxies) summed
after 1, 5 and 10 of them, and each of those deploys and destroys timed.

Everything lives in its own FORKSTAGE_HOME under /tmp with its own state-server port, and is
destroyed and stopped at the end, also on failure or Ctrl-C.
Usage: python bench/preview.py [--runs N] [--budget SECONDS] [--stages N]
"""

from __future__ import annotations

import sys

CLI_MODE = "--cli"
EVENTS_ENV = "FORKSTAGE_BENCH_EVENTS"


def _cli(argv: list[str]) -> None:
    """`forkstage ARGS`, keeping each `terraform apply -json` output for the migrations timing."""
    import os

    from forkstage.cli import main
    from forkstage.report import TerraformOutput, observing

    events = os.environ.get(EVENTS_ENV)

    def keep_apply_events(output: TerraformOutput) -> None:
        if events and output.args[:1] == ("apply",):
            with open(events, "a") as out:
                out.write(output.stdout)

    with observing(keep_apply_events):
        main(argv, prog_name="forkstage")


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == CLI_MODE:
    _cli(sys.argv[2:])

# The --cli mode above must not pay for the imports below.
# ruff: noqa: E402
import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from localcloud.net import free_port

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SEED = "Hello from forkstage: this note lives in the branch database."
GOALS = {"deploy": 15.0, "destroy": 8.0}
MIGRATIONS = "terraform_data.migrations"
BEFORE = "(apply: first event -> first change)"
CHANGES = "(apply: first change -> last event)"
COMMAND_TIMEOUT = 120.0
# The interpreter of the `forkstage` console script: the stand-in provider launchers written
# into the home embed the interpreter path, so every command must use the same one.
_SHEBANG = (BIN / "forkstage").read_text().splitlines()[0].removeprefix("#!").strip()
FORKSTAGE_PYTHON = _SHEBANG if Path(_SHEBANG).name.startswith("python") else sys.executable


def _end_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def forkstage(*args: str, events: Path | None = None) -> tuple[str, float]:
    """Run one CLI command; return its stdout and wall-clock seconds.

    Each command runs in a session of its own: on Ctrl-C or SIGTERM the bench lets the running
    command finish (a killed one would leave its state lock behind and the clean-up's destroys
    would fail on it), then cleans up; a command over its time limit is ended with its children.
    """
    env = dict(os.environ)
    if events is not None:
        env[EVENTS_ENV] = str(events)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [FORKSTAGE_PYTHON, str(Path(__file__).resolve()), CLI_MODE, *args],
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        _end_group(proc)
        raise RuntimeError(
            f"forkstage {' '.join(args)} took over {COMMAND_TIMEOUT:.0f} s"
        ) from None
    except BaseException:
        try:
            proc.communicate(timeout=COMMAND_TIMEOUT)
        except BaseException:
            _end_group(proc)
        raise
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(
            f"forkstage {' '.join(args)} failed ({proc.returncode}): {(err or out).strip()[-1500:]}"
        )
    return out, took


def _key(resource: dict[str, Any]) -> str:
    addr = str(resource.get("addr", ""))
    kind = str(resource.get("resource_type", ""))
    if kind == "terraform_data":  # the migrations step and the workspace guard
        name = str(resource.get("resource_name", ""))
        return MIGRATIONS if name.startswith("migrations_") else f"terraform_data.{name}"
    return f"data.{kind}" if addr.startswith("data.") else kind


def apply_timings(events_file: Path) -> dict[str, float]:
    """Seconds per resource (`apply_start` to `apply_complete`) of one `apply -json`, plus
    where the rest of the apply went: before the first change (provider start, refresh, plan)
    and from the first change to the last event."""
    starts: dict[str, datetime] = {}
    took: dict[str, float] = {}
    moments: list[datetime] = []
    first_change: datetime | None = None
    for line in events_file.read_text().splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        moment = datetime.fromisoformat(event["@timestamp"])
        moments.append(moment)
        kind = event.get("type")
        if kind not in ("apply_start", "apply_complete"):
            continue
        resource = (event.get("hook") or {}).get("resource") or {}
        addr = str(resource.get("addr", ""))
        if kind == "apply_start":
            starts[addr] = moment
            first_change = first_change or moment
        elif addr in starts:
            key = _key(resource)
            took[key] = took.get(key, 0.0) + (moment - starts.pop(addr)).total_seconds()
    if MIGRATIONS not in took or first_change is None:
        raise RuntimeError(f"no migrations resource was applied (events in {events_file})")
    took[BEFORE] = (first_change - moments[0]).total_seconds()
    took[CHANGES] = (moments[-1] - first_change).total_seconds()
    return took


@dataclass
class Cycle:
    """One stage's deploy, Worker start and destroy."""

    stage: str
    deploy_wall: float = 0.0
    deploy_phases: dict[str, float] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=dict)
    worker: float = 0.0
    destroy_wall: float = 0.0
    destroy_phases: dict[str, float] = field(default_factory=dict)


def http_get(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=15) as response:
        return str(response.read().decode())


def run_cycle(home: Path, stage: str) -> Cycle:
    cycle = Cycle(stage=stage)
    events = home / "bench" / f"{stage}-apply.jsonl"
    events.parent.mkdir(parents=True, exist_ok=True)
    out, cycle.deploy_wall = forkstage("deploy", "--stage", stage, "--json", events=events)
    result = json.loads(out)
    cycle.deploy_phases = result["phases"]
    cycle.resources = apply_timings(events)
    # On the local target the stand-in starts the Worker during the apply; the deploy ends by
    # waiting until its /health answers, timed by the CLI as its "worker" phase.
    if "worker" not in cycle.deploy_phases or "local_url" not in result["outputs"]:
        raise RuntimeError(f"the deploy of {stage} served no Worker: is the target local?")
    cycle.worker = cycle.deploy_phases["worker"]
    notes = http_get(str(result["outputs"]["local_url"]) + "/notes")
    if SEED not in notes:  # the Worker must really read the stage's branch
        raise RuntimeError(f"{stage}'s Worker did not return the seed row: {notes[:300]}")

    out, cycle.destroy_wall = forkstage("destroy", "--stage", stage, "--json")
    result = json.loads(out)
    cycle.destroy_phases = result["phases"]
    serial = result.get("owner_serial") or {}
    if serial and serial.get("before") != serial.get("after"):
        raise RuntimeError(f"destroying {stage} changed staging's state: {serial}")
    return cycle


# -- table ---------------------------------------------------------------------------------------
COLUMNS = ("synth", "init+ws", "plan", "apply", "migr.", "worker", "other", "total")


def _median(values: list[float]) -> float:
    return statistics.median(values)


def deploy_row(cycles: list[Cycle]) -> dict[str, float | None]:
    def parts(c: Cycle) -> dict[str, float]:
        p = c.deploy_phases
        init = p.get("init", 0.0) + p.get("workspace", 0.0)
        known = p.get("synth", 0.0) + init + p.get("apply", 0.0) + c.worker
        return {
            "synth": p.get("synth", 0.0),
            "init+ws": init,
            "apply": p.get("apply", 0.0),
            "migr.": c.resources[MIGRATIONS],
            "worker": c.worker,
            "other": c.deploy_wall - known,
            "total": c.deploy_wall,
        }

    rows = [parts(c) for c in cycles]
    row: dict[str, float | None] = {k: _median([r[k] for r in rows]) for k in rows[0]}
    row["plan"] = None
    return row


def destroy_row(cycles: list[Cycle]) -> dict[str, float | None]:
    def parts(c: Cycle) -> dict[str, float]:
        p = c.destroy_phases
        init = p.get("init", 0.0) + p.get("workspace", 0.0)
        known = p.get("synth", 0.0) + init + p.get("plan", 0.0) + p.get("apply", 0.0)
        return {
            "synth": p.get("synth", 0.0),
            "init+ws": init,
            "plan": p.get("plan", 0.0),
            "apply": p.get("apply", 0.0),
            "other": c.destroy_wall - known,
            "total": c.destroy_wall,
        }

    rows = [parts(c) for c in cycles]
    row: dict[str, float | None] = {k: _median([r[k] for r in rows]) for k in rows[0]}
    row["migr."] = row["worker"] = None
    return row


def _cell(value: float | None) -> str:
    return f"{value:>8.2f}" if value is not None else f"{'-':>8}"


# -- footprint ----------------------------------------------------------------------------------
FOOTPRINT_MARKS = (1, 5, 10)
PSS_GOAL_MIB = 60.0


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def cloud_pids(home: Path) -> set[int]:
    """The local cloud's processes: those that name the home or run in it, and their children."""
    pids = {int(line.split()[0]) for line in processes_of(home)}
    kids = _children()
    todo = list(pids)
    while todo:
        for child in kids.get(todo.pop(), []):
            if child not in pids and child != os.getpid():
                pids.add(child)
                todo.append(child)
    return pids


def pss_kib(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def footprint_mib(home: Path) -> tuple[float, int]:
    """Total PSS of the local cloud in MiB, and how many processes it is."""
    time.sleep(1.0)  # let the last deploy's short-lived processes end
    pids = cloud_pids(home)
    return sum(pss_kib(p) for p in pids) / 1024, len(pids)


@dataclass
class Footprint:
    before: tuple[float, int] = (0.0, 0)
    at: dict[int, tuple[float, int]] = field(default_factory=dict)
    deploys: list[float] = field(default_factory=list)
    destroys: list[float] = field(default_factory=list)


def measure_footprint(home: Path, count: int, budget_end: float) -> Footprint:
    result = Footprint(before=footprint_mib(home))
    deployed = []
    try:
        for i in range(1, count + 1):
            if time.monotonic() > budget_end:
                print(f"budget used: footprint stops at {i - 1} stages")
                break
            stage = f"pr-{9500 + i}"
            _, took = forkstage("deploy", "--stage", stage, "--json")
            deployed.append(stage)
            result.deploys.append(took)
            if i in FOOTPRINT_MARKS or i == count:
                result.at[i] = footprint_mib(home)
                print(f"footprint: {i} PR stages, {result.at[i][0]:.0f} MiB PSS", flush=True)
    finally:
        for stage in deployed:
            _, took = forkstage("destroy", "--stage", stage, "--json")
            result.destroys.append(took)
    return result


def print_footprint(fp: Footprint) -> None:
    print("\nfootprint: PSS of every local-cloud process, MiB (staging deployed)")
    print(f"{'PR stages':<12}{'PSS MiB':>10}{'procs':>8}{'per PR stage':>14}")
    base, nprocs = fp.before
    print(f"{0:<12}{base:>10.0f}{nprocs:>8}{'-':>14}")
    for n, (mib, procs) in sorted(fp.at.items()):
        print(f"{n:<12}{mib:>10.0f}{procs:>8}{(mib - base) / n:>14.1f}")
    if len(fp.at) >= 2:
        (n1, (m1, _)), (n2, (m2, _)) = min(fp.at.items()), max(fp.at.items())
        slope = (m2 - m1) / (n2 - n1)
        verdict = "met" if slope <= PSS_GOAL_MIB else "MISSED"
        print(
            f"each additional PR stage ({n1} -> {n2}): {slope:.1f} MiB "
            f"(goal <= {PSS_GOAL_MIB:.0f} MiB {verdict})"
        )
    if fp.deploys:
        print(
            f"deploys: median {_median(fp.deploys):.2f} s (min {min(fp.deploys):.2f}, max "
            f"{max(fp.deploys):.2f}); destroys: median {_median(fp.destroys):.2f} s "
            f"(min {min(fp.destroys):.2f}, max {max(fp.destroys):.2f})"
        )


def print_table(
    prs: list[Cycle], baseline: list[Cycle], staging_seconds: float, elapsed: float
) -> None:
    rows = {
        "pr-N deploy (fork staging)": deploy_row(prs),
        "pr-N destroy": destroy_row(prs),
        "dev_benchN deploy (own project)": deploy_row(baseline),
        "dev_benchN destroy": destroy_row(baseline),
    }
    goals = {"pr-N deploy (fork staging)": "deploy", "pr-N destroy": "destroy"}
    print(
        f"\npreview benchmark: median of {len(prs)} cycles (pr: {', '.join(c.stage for c in prs)};"
        f" baseline: {', '.join(c.stage for c in baseline)}), seconds, {os.cpu_count()} cores,"
        f" staging deployed once first ({staging_seconds:.1f} s)"
    )
    width = 32
    print(f"{'stage / operation':<{width}}" + "".join(f"{c:>8}" for c in COLUMNS) + "  goal")
    for name, row in rows.items():
        goal = ""
        if name in goals:
            limit = GOALS[goals[name]]
            total = row["total"] or 0.0
            goal = f"  <= {limit:.0f} s {'met' if total <= limit else 'MISSED'}"
        print(f"{name:<{width}}" + "".join(_cell(row[c]) for c in COLUMNS) + goal)
    pr_dep, base_dep = rows["pr-N deploy (fork staging)"], rows["dev_benchN deploy (own project)"]
    pr_des, base_des = rows["pr-N destroy"], rows["dev_benchN destroy"]
    print(
        "baseline / pr-N: "
        f"deploy {(base_dep['total'] or 0) / (pr_dep['total'] or 1):.2f}x, "
        f"destroy {(base_des['total'] or 0) / (pr_des['total'] or 1):.2f}x, "
        f"apply {(base_dep['apply'] or 0) / (pr_dep['apply'] or 1):.2f}x "
        "(> 1: the PR stage is faster)"
    )
    kinds = sorted({k for c in prs + baseline for k in c.resources}, key=lambda k: (k[0] == "(", k))
    print("inside terraform apply of the deploy, median s   pr-N / baseline:")
    for kind in kinds:
        pr = [c.resources[kind] for c in prs if kind in c.resources]
        base = [c.resources[kind] for c in baseline if kind in c.resources]
        left = f"{_median(pr):.3f}" if pr else "-"
        right = f"{_median(base):.3f}" if base else "-"
        print(f"  {kind:<42} {left:>7} / {right}")
    print(
        "columns: phases as `forkstage deploy|destroy --json` reports them; init+ws = terraform "
        "init + workspace select (+ delete on destroy); apply = terraform apply as a whole, "
        "migr. = the migrations resource inside it; worker = the deploy's wait until the "
        "Worker the stand-in started answers /health; other = CLI wall clock minus those phases "
        "(interpreter start, state-server checks, outputs); total = CLI wall clock, median of "
        "the per-cycle totals (columns are medians each, so they need not add up)."
    )
    print(f"bench wall clock: {elapsed:.0f} s")


# -- set-up and clean-up ---------------------------------------------------------------------------
def isolate(home: Path, port: int) -> None:
    """This process and every command it runs see only the bench's home and state server."""
    for key in list(os.environ):
        if key.startswith(("FORKSTAGE_", "AWS_", "TF_", "CDKTF_")) or key == "STAGE":
            del os.environ[key]
    os.environ.update(
        FORKSTAGE_HOME=str(home),
        FORKSTAGE_BACKEND_ENDPOINT=f"http://127.0.0.1:{port}",
        PYTHONPATH=str(REPO),  # the checkout this file is in, also for an older worktree
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
    )


def processes_of(home: Path) -> list[str]:
    """Processes whose command line mentions the home or that run inside it (pid and args)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if args and (str(home) in args or Path(cwd).is_relative_to(home)):
            found.append(f"{entry.name} {args.strip()}")
    return found


def clean_up(home: Path) -> None:
    """Destroy whatever the bench left deployed (PR stages first), then stop the local cloud."""
    from forkstage.local_workers import stop_workers

    stop_workers(home)
    try:
        out, _ = forkstage("stages", "--json")
        names = [r["stage"] for r in json.loads(out)]
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
        print(f"clean-up: cannot list stages: {exc}", file=sys.stderr)
        names = []
    failed = 0
    for name in sorted(names, key=lambda n: (not n.startswith("pr-"), n == "staging", n)):
        try:
            forkstage("destroy", "--stage", name, "--force", "--cascade")
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            failed += 1
            print(f"clean-up: {exc}", file=sys.stderr)
    try:
        forkstage("local", "down")
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"clean-up: {exc}", file=sys.stderr)
    left = processes_of(home)
    if left:
        print(
            "clean-up: still running (stop them by pid):\n  " + "\n  ".join(left), file=sys.stderr
        )
        return
    shutil.rmtree(home, ignore_errors=True)
    destroyed = f"{len(names) - failed} of {len(names)} stages destroyed"
    print(f"clean-up: {destroyed}, local cloud stopped, {home} removed", file=sys.stderr)


def _terminate(signum: int, _frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-up short
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="deploy+destroy cycles per kind")
    parser.add_argument(
        "--budget",
        type=float,
        default=240.0,
        help="stop starting new cycles after this many seconds (clean-up comes after)",
    )
    parser.add_argument(
        "--stages", type=int, default=10, help="PR stages deployed at once for the footprint"
    )
    args = parser.parse_args()
    if args.runs < 0 or args.stages < 0:
        parser.error("--runs and --stages must not be negative")
    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="forkstage-bench-", dir="/tmp"))
    home.chmod(0o755)  # PostgreSQL runs as the postgres user and must enter the home
    isolate(home, free_port())
    os.chdir(REPO)
    sys.path.insert(0, str(REPO))
    signal.signal(signal.SIGTERM, _terminate)
    prs: list[Cycle] = []
    baseline: list[Cycle] = []
    footprint: Footprint | None = None
    staging_seconds = 0.0
    try:
        _, staging_seconds = forkstage("deploy", "--stage", "staging", "--json")
        for i in range(1, args.runs + 1):
            if time.monotonic() - started > args.budget:
                print(f"budget of {args.budget:.0f} s used: stopping after {i - 1} cycles")
                break
            # distinct stages each run; the two kinds interleaved so drift hits both alike
            prs.append(run_cycle(home, f"pr-{9000 + i}"))
            baseline.append(run_cycle(home, f"dev_bench{i}"))
            print(
                f"cycle {i}: deploy/destroy {prs[-1].stage} {prs[-1].deploy_wall:.1f} s / "
                f"{prs[-1].destroy_wall:.1f} s; {baseline[-1].stage} "
                f"{baseline[-1].deploy_wall:.1f} s / {baseline[-1].destroy_wall:.1f} s",
                flush=True,
            )
        if args.stages:
            # its own allowance: the cycles' budget must not cut the 10-stage mark short
            footprint = measure_footprint(
                home, args.stages, time.monotonic() + args.stages * COMMAND_TIMEOUT
            )
    finally:
        clean_up(home)
    if prs:
        print_table(prs, baseline, staging_seconds, time.monotonic() - started)
    if footprint is not None:
        print_footprint(footprint)


if __name__ == "__main__":
    main()
