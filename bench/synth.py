"""Synth speed: `forkstage synth --stage pr-147` against `npx cdktf synth` of the same app.

Both run in this process's environment on this machine, in the same run; the table also breaks
forkstage's time down (interpreter, `import cdktf` with its node jsii process, our bindings, the
stack build + synth) so it is clear where the time goes.
Usage: python bench/synth.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    env = {
        **os.environ,
        "PATH": os.pathsep.join(
            [str(BIN), str(REPO / "node_modules" / ".bin"), os.environ["PATH"]]
        ),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "CHECKPOINT_DISABLE": "1",
        "DISABLE_VERSION_CHECK": "1",
        "CDKTF_DISABLE_PLUGIN_CACHE_ENV": "1",
    }
    py = str(BIN / "python")
    with tempfile.TemporaryDirectory() as tmp:
        env["CDKTF_HOME"] = str(Path(tmp) / "cdktf-home")
        env["FORKSTAGE_HOME"] = str(Path(tmp) / "home")
        cases = {
            "npx cdktf synth (baseline)": (
                ["npx", "cdktf", "synth", "--output", f"{tmp}/cdktf"],
                {**env, "STAGE": "pr-147"},
            ),
            "forkstage synth --stage pr-147": (
                [str(BIN / "forkstage"), "synth", "--stage", "pr-147", "--out", f"{tmp}/fs"],
                env,
            ),
            "forkstage synth --stage pr-147 --only": (
                [
                    str(BIN / "forkstage"),
                    "synth",
                    "--stage",
                    "pr-147",
                    "--only",
                    "--out",
                    f"{tmp}/fs1",
                ],
                env,
            ),
            "  part: python start": ([py, "-c", "pass"], env),
            "  part: + import cdktf (node jsii)": ([py, "-c", "import cdk, cdktf"], env),
            "  part: + import generated bindings": (
                [
                    py,
                    "-c",
                    "import cdk, cdktf, cdk.providers.generated.neon, "
                    "cdk.providers.generated.cloudflare",
                ],
                env,
            ),
            "  part: python main.py (3 stacks)": (
                [py, "main.py"],
                {**env, "FORKSTAGE_STAGE": "pr-147", "CDKTF_OUTDIR": f"{tmp}/main"},
            ),
        }
        results: dict[str, list[float]] = {}
        for name, (argv, case_env) in cases.items():
            timed(argv, case_env)  # warm-up (file cache, node modules)
            results[name] = [timed(argv, case_env) for _ in range(args.runs)]
    base = statistics.median(results["npx cdktf synth (baseline)"])
    print(f"synth benchmark: {args.runs} runs each, median and min seconds; speed-up vs baseline")
    print(f"{'case':<40} {'median s':>9} {'min s':>7} {'speed-up':>9}")
    for name, times in results.items():
        med = statistics.median(times)
        speed = f"{base / med:>8.1f}x" if not name.startswith("  part") else f"{'':>9}"
        print(f"{name:<40} {med:>9.3f} {min(times):>7.3f} {speed}")
    print("goal: forkstage synth <= 1.0 s and >= 4x faster than npx cdktf synth")


if __name__ == "__main__":
    main()
