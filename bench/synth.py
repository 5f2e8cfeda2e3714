"""Synth speed: `forkstage synth --stage pr-147` against `npx cdktf synth` of the same app, and
the same pair on CDK Terrain (`FORKSTAGE_CDK=cdktn`: `npx cdktn synth`, the app on cdktn 0.24).

Everything runs on this machine in the same run, interleaved (round-robin, after one warm-up
round), and prints one table: per runtime, the CLI's synth as the baseline, `forkstage synth`
(stack-pr-147 alone: a named stage is synthesized alone, by both) and the app alone, then rows
that show where forkstage's time goes (on cdktf, the repository's default):

- the app alone (`python main.py`, in the environment `forkstage synth` gives it) and the same
  app on cdktf with each speed-up of cdk/kernel.py taken back out: jsii's stock launcher on the
  machine's node, the same on the pinned Node 22, no early kernel start, no override memo;
- one run of main.py split into phases by this file's `--probe` mode, which runs main.py in its
  own process with timers on jsii's kernel calls (interpreter start, Python imports, node kernel
  start, assembly loads, stack build with its jsii call count, synth with its callback count,
  exit) — under the environment `forkstage synth` gives its app;
- what `forkstage synth` adds around the app: the CLI's own start, and cdktf's validation of each
  stack's `terraform_data`, which runs `$TERRAFORM_BINARY_NAME version` (the pinned engine's
  shim for forkstage; `terraform` from PATH for the baseline) once per stack.

Usage: python bench/synth.py [--runs N]
"""

from __future__ import annotations

import collections
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# Only what --probe needs is imported here: the probe times main.py from interpreter start.

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROBE = "--probe"
STACKS = ("pr-147",)  # a named stage is synthesized alone
# Classes that add a validation running `$TERRAFORM_BINARY_NAME version` at synth.
RUNTIMES = ("cdktf", "cdktn")
VERSION_PROBES = tuple(f"{r}.{c}" for r in RUNTIMES for c in ("DataResource", "CloudBackend"))


def probe(out_file: str) -> None:
    """Run main.py here with timers on jsii's kernel calls; write the phases to ``out_file``."""
    import atexit
    import gc
    import runpy

    t_first = time.time()
    gc.disable()  # as main.py does first thing; here jsii is imported before main.py runs
    marks: dict[str, float] = {"started": float(os.environ["BENCH_T0"]), "python": t_first}
    calls: collections.Counter[str] = collections.Counter()
    callbacks: collections.Counter[str] = collections.Counter()
    phase = {"name": "import"}

    def report() -> None:  # atexit runs it after jsii's own handler has stopped the kernel
        marks["kernel_stopped"] = time.time()
        Path(out_file).write_text(json.dumps({"marks": marks, "calls": calls, "cb": callbacks}))

    atexit.register(report)
    sys.path.insert(0, str(REPO))
    from cdk.kernel import start_early

    start_early()  # what main.py does before its imports; its own call then finds jsii loaded
    import jsii
    import jsii._kernel as kernel
    import jsii._kernel.providers.process as process

    provider = process.ProcessProvider
    started_kernel, invoke, handle = provider._process.fget, jsii.invoke, kernel._handle_callback

    def timed_kernel(self: object) -> object:  # jsii's memoized kernel process; starts it once
        if "kernel_start" in marks:
            return started_kernel(self)
        marks["kernel_start"] = time.time()
        try:
            return started_kernel(self)
        finally:
            marks["kernel_ready"] = time.time()

    def counted(kind: str, call: Any) -> Any:  # one kernel request (and its answer)
        def wrapper(self: object, *args: object, **kwargs: object) -> object:
            if kind == "create" and "build" not in marks:
                marks["build"] = time.time()
                phase["name"] = "build"
            if kind == "create" and getattr(args[0], "fqn", "") in VERSION_PROBES:
                calls["version probes"] += 1
            began, ready = time.time(), marks.get("kernel_ready")
            try:
                return call(self, *args, **kwargs)
            finally:
                if kind == "load":  # without the kernel start the first load triggers
                    start = marks["kernel_ready"] - marks["kernel_start"] if ready is None else 0
                    marks["loads"] = marks.get("loads", 0.0) + time.time() - began - start
                calls[f"{phase['name']}:{kind}"] += 1

        return wrapper

    def timed_invoke(obj: object, method: str, args: object = None) -> object:
        if method != "synth":
            return invoke(obj, method, args)
        marks["synth"] = time.time()
        phase["name"] = "synth"
        try:
            return invoke(obj, method, args)
        finally:
            marks["synth_done"] = time.time()

    def counted_callback(k: object, callback: object) -> object:
        callbacks[f"{phase['name']}:{callback.cookie}"] += 1  # type: ignore[attr-defined]
        return handle(k, callback)

    provider._process = property(timed_kernel)  # type: ignore[assignment]
    for kind in ("load", "create", "get", "set", "sget", "sset", "invoke", "sinvoke"):
        setattr(provider, kind, counted(kind, getattr(provider, kind)))
    provider.sync_complete = counted("complete", provider.sync_complete)  # type: ignore[method-assign]
    jsii.invoke = timed_invoke  # cdktf calls jsii.invoke(...) through the module
    kernel._handle_callback = counted_callback
    sys.argv = [str(REPO / "main.py")]
    runpy.run_path(str(REPO / "main.py"), run_name="__main__")  # exits through main.exit_now


def run(argv: list[str], env: dict[str, str], out: Path | None = None) -> float:
    import shutil
    import subprocess

    if out is not None:
        shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}")
    if out is not None:
        for stack in STACKS:
            if not (out / "stacks" / f"stack-{stack}" / "cdk.tf.json").is_file():
                raise SystemExit(f"{' '.join(argv)} wrote no stack-{stack}")
    return took


def run_probe(env: dict[str, str], tmp: Path) -> dict[str, float]:
    """One probed main.py run; its phases in seconds, keyed by table row."""
    out_file = tmp / "probe.json"
    t0 = time.time()
    run(
        [str(BIN / "python"), str(Path(__file__).resolve()), PROBE, str(out_file)],
        {**env, "BENCH_T0": repr(t0), "CDKTF_OUTDIR": str(tmp / "probe")},
        tmp / "probe",
    )
    ended = time.time()
    data = json.loads(out_file.read_text())
    m, calls, cb = data["marks"], data["calls"], data["cb"]
    build_calls = sum(v for k, v in calls.items() if k.startswith("build:") and k != "build:load")
    synth_cb = sum(v for k, v in cb.items() if k.startswith("synth:"))
    probes = calls.get("version probes", 0)
    synth = m["synth_done"] - m["synth"]
    imports = m["build"] - m["python"] - (m["kernel_ready"] - m["kernel_start"]) - m["loads"]
    return {
        "python start (interpreter, site)": m["python"] - m["started"],
        "python imports, node booting alongside": imports,
        "waiting for node: kernel start + handshake": m["kernel_ready"] - m["kernel_start"],
        "waiting for node: constructs + cdktf assembly loads": m["loads"],
        f"build {len(STACKS)} stack: {build_calls} jsii calls": m["synth"] - m["build"],
        f"App.synth: {synth_cb} callbacks, {probes} version probes, JSON": synth,
        "exit (kernel stop, process end)": ended - m["synth_done"],
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == PROBE:
        probe(sys.argv[2])
        return
    import argparse
    import shutil
    import statistics
    import tempfile

    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from cdk.kernel import PINNED_NODE
    from forkstage.engine import terraform_binary, terraform_env

    node_bin = REPO / "node_modules" / ".bin"
    plain_path = os.environ["PATH"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FORKSTAGE_", "JSII_"))},
        "PATH": os.pathsep.join([str(BIN), str(node_bin), plain_path]),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "CHECKPOINT_DISABLE": "1",
        "DISABLE_VERSION_CHECK": "1",
        "CDKTF_DISABLE_PLUGIN_CACHE_ENV": "1",
    }
    env.pop("STAGE", None)
    system_node = shutil.which("node", path=plain_path) or "node"
    py, fs, shim = str(BIN / "python"), str(BIN / "forkstage"), terraform_binary()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env["CDKTF_HOME"] = str(tmp / "cdktf-home")
        env["FORKSTAGE_HOME"] = str(tmp / "home")
        # What `forkstage synth` gives the app (TERRAFORM_BINARY_NAME = the pinned engine).
        app_env = {**terraform_env(tmp / "home", base=env), "FORKSTAGE_STAGE": "pr-147"}

        def app(**extra: str) -> tuple[list[str], dict[str, str], Path | None]:
            out = tmp / f"app-{'-'.join(f'{k}={Path(v).name}' for k, v in extra.items())}"
            return [py, "main.py"], {**app_env, **extra, "CDKTF_OUTDIR": str(out)}, out

        cases: dict[str, tuple[list[str], dict[str, str], Path | None]] = {}
        for rt in RUNTIMES:
            rt_env = {**env, "FORKSTAGE_CDK": rt}
            cases[baseline(rt)] = (
                ["npx", rt, "synth", "--output", str(tmp / rt)],
                {**rt_env, "STAGE": "pr-147"},
                tmp / rt,
            )
            cases[f"forkstage synth --stage pr-147 ({rt})"] = (
                [fs, "synth", "--stage", "pr-147", "--out", str(tmp / f"fs-{rt}")],
                rt_env,
                tmp / f"fs-{rt}",
            )
            cases[f"app: python main.py, stack-pr-147 ({rt})"] = app(FORKSTAGE_CDK=rt)
        whole = list(cases)
        cases |= {
            "  app (cdktf), jsii stock launcher + machine's node": app(JSII_NODE=system_node),
            **(
                {"  app (cdktf), jsii stock launcher + Node 22": app(JSII_NODE=str(PINNED_NODE))}
                if PINNED_NODE.is_file()
                else {}
            ),
            "  app (cdktf), no early kernel start": app(FORKSTAGE_JSII_EARLY="0"),
            "  app (cdktf), no jsii override memo": app(FORKSTAGE_JSII_MEMO="0"),
            "  part: forkstage CLI start (forkstage --help)": ([fs, "--help"], env, None),
            f"  part: {len(STACKS)} x `forkstage-terraform version`": (
                ["sh", "-c", f'for _ in {" ".join(STACKS)}; do "{shim}" version >/dev/null; done'],
                app_env,
                None,
            ),
        }
        results: dict[str, list[float]] = collections.defaultdict(list)
        for round_no in range(args.runs + 1):  # round 0 warms caches up and is not counted
            for name, (argv, case_env, out) in cases.items():
                took = run(argv, case_env, out)
                if round_no:
                    results[name].append(took)
            phases = run_probe(app_env, tmp)
            if round_no:
                for name, took in phases.items():
                    results[f"  phase: {name}"].append(took)
    phase_rows = [n for n in results if n.startswith("  phase")]
    order = [*whole, *phase_rows, *[n for n in cases if n not in whole]]
    print(f"synth benchmark: {args.runs} runs each, interleaved; median and min seconds")
    print("speed-up: against the CLI synth of the same runtime; phases and parts: cdktf")
    print(f"{'case':<60} {'median s':>9} {'min s':>7} {'speed-up':>9}")
    for name in order:
        times = results[name]
        med = statistics.median(times)
        rt = "cdktn" if name.endswith("cdktn)") else "cdktf"
        base = statistics.median(results[baseline(rt)])
        entire = not name.lstrip().startswith(("part", "phase"))
        speed = f"{base / med:>8.1f}x" if entire else ""
        print(f"{name:<60} {med:>9.3f} {min(times):>7.3f} {speed:>9}")
    for rt in RUNTIMES:
        base = statistics.median(results[baseline(rt)])
        ours = statistics.median(results[f"forkstage synth --stage pr-147 ({rt})"])
        met = ours <= 1.0 and base / ours >= 4
        print(
            f"goal ({rt}): forkstage synth <= 1.0 s and >= 4x faster than npx {rt} synth: "
            f"{ours:.3f} s, {base / ours:.1f}x -> {'met' if met else 'not met'}"
        )


def baseline(runtime: str) -> str:
    return f"npx {runtime} synth (baseline, {runtime})"


if __name__ == "__main__":
    main()
