"""Listing at scale and CLI start: `forkstage stages --json` over 0, 100 and 500 stages, and the
start of `forkstage --help` and of `forkstage stages` with no stages.

Stages are seeded by writing state objects straight to the embedded state server over S3
(boto3, the admin key), not by deploying: the listing reads states, it does not care how they
got there. Every command runs as a user runs it (the `forkstage` console script, a new process
each time), from the repository given with --repo (default: this one), so an older checkout can
be measured with the same bench. Everything lives in its own FORKSTAGE_HOME under /tmp with its
own state-server port and is removed at the end.

Usage: python bench/listing.py [--runs N] [--repo PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SIZES = (0, 100, 500)
LOCKED_EVERY = 50  # one stage in this many holds a Terraform lock


def state_document(stage: str, serial: int) -> bytes:
    """A state like a deployed PR stage's: a few managed resources and outputs."""
    resources = [
        {
            "mode": "managed",
            "type": kind,
            "name": "this",
            "provider": 'provider["registry.terraform.io/x/y"]',
            "instances": [{"schema_version": 0, "attributes": {"id": f"{kind}-{stage}"}}],
        }
        for kind in (
            "neon_branch",
            "neon_endpoint",
            "cloudflare_hyperdrive_config",
            "cloudflare_workers_script",
            "terraform_data",
        )
    ]
    outputs = {
        "neon_branch_id": {"value": f"br-{stage}", "type": "string"},
        "worker_name": {"value": f"forkstage-api-{stage}", "type": "string"},
        "database_url": {"value": "postgresql://u:p@h/db", "type": "string", "sensitive": True},
    }
    doc = {
        "version": 4,
        "terraform_version": "1.15.5",
        "serial": serial,
        "lineage": str(uuid.uuid4()),
        "outputs": outputs,
        "resources": resources,
        "check_results": None,
    }
    return json.dumps(doc, indent=2).encode()


class Bench:
    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.home = Path(tempfile.mkdtemp(prefix="forkstage-listing-", dir="/tmp"))
        sys.path.insert(0, str(REPO))
        from localcloud.net import free_port

        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("FORKSTAGE_", "AWS_", "TF_", "CDKTF_"))
        }
        self.env.update(
            FORKSTAGE_HOME=str(self.home),
            FORKSTAGE_BACKEND_ENDPOINT=f"http://127.0.0.1:{free_port()}",
            PYTHONPATH=str(repo),
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        self.seeded = 0

    def run(self, *args: str) -> tuple[str, float]:
        started = time.perf_counter()
        done = subprocess.run(
            [str(BIN / "forkstage"), *args],
            cwd=self.repo,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        took = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"forkstage {' '.join(args)}: {done.stderr.strip()[-800:]}")
        return done.stdout, took

    def timed(self, runs: int, *args: str) -> list[float]:
        return [self.run(*args)[1] for _ in range(runs)]

    def client(self) -> Any:
        """An S3 client with the admin key, asked of the measured checkout's own code."""
        import boto3

        code = (
            "import json; from forkstage.context import Project; "
            "from forkstage.state import admin_env; p = Project.load(); "
            "print(json.dumps(admin_env(p.settings.backend, p.home)))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=self.repo,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        creds = json.loads(done.stdout)
        return boto3.client(
            "s3",
            endpoint_url=self.env["FORKSTAGE_BACKEND_ENDPOINT"],
            region_name="us-east-1",
            aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
        )

    def seed_to(self, count: int, bucket: str, key: str) -> None:
        """Write pr-<n> states (and a lock on some) until ``count`` stages exist."""
        client = self.client()

        def put(n: int) -> None:
            stage = f"pr-{n}"
            client.put_object(
                Bucket=bucket, Key=f"env:/{stage}/{key}", Body=state_document(stage, n)
            )
            if n % LOCKED_EVERY == 0:
                lock = {"ID": str(uuid.uuid4()), "Who": f"ci@runner-{n}", "Operation": "apply"}
                client.put_object(
                    Bucket=bucket, Key=f"env:/{stage}/{key}.tflock", Body=json.dumps(lock)
                )

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, range(self.seeded + 1, count + 1)))
        self.seeded = count

    def close(self) -> None:
        pid_file = self.home / "backend.pid"
        try:
            pid = int(pid_file.read_text())
            os.kill(pid, 15)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.05)
        except (OSError, ValueError):
            pass
        shutil.rmtree(self.home, ignore_errors=True)


def row(name: str, times: list[float], base: float | None = None) -> str:
    med = statistics.median(times)
    ratio = f"{med / base:>7.2f}x" if base else f"{'':>8}"
    return f"{name:<38}{med:>8.3f}{min(times):>8.3f}{max(times):>8.3f}{ratio}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (median shown)")
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose CLI is measured")
    args = parser.parse_args()
    bench = Bench(args.repo.resolve())
    lines = []
    try:
        sys.path.insert(0, str(REPO))
        from cdk.settings import load_settings

        backend = load_settings(bench.repo).backend
        help_times = bench.timed(args.runs, "--help")
        bench.run("stages", "--json")  # starts the embedded server (not timed)
        results: dict[int, list[float]] = {}
        for size in SIZES:
            bench.seed_to(size, backend.bucket, backend.key)
            out, _ = bench.run("stages", "--json")
            rows = json.loads(out)
            if len(rows) != size:
                raise RuntimeError(f"stages listed {len(rows)} stages, {size} were written")
            results[size] = bench.timed(args.runs, "stages", "--json")
        # a home that never listed these stages (a fresh CI runner): no facts cache to reuse
        cache = bench.home / "cache" / "stage-facts.json"
        cold = []
        for _ in range(args.runs):
            cache.unlink(missing_ok=True)
            cold.append(bench.run("stages", "--json")[1])
        empty = statistics.median(results[0])
        lines.append(row("forkstage --help", help_times))
        for size in SIZES:
            lines.append(row(f"forkstage stages --json, {size} stages", results[size], empty))
        lines.append(row(f"  the same, {SIZES[-1]}, cold (new home)", cold, empty))
    finally:
        bench.close()
    print(
        f"\nlisting benchmark: {bench.repo}, {args.runs} runs each, seconds (wall clock of a "
        f"new process), {os.cpu_count()} cores, embedded state server"
    )
    print(f"{'command':<38}{'median':>8}{'min':>8}{'max':>8}{'/ empty':>8}")
    for line in lines:
        print(line)
    print("goals: 500 stages <= 1.5x the empty listing; --help and the empty listing at most half")
    print("of what they took before (compare with this bench run on the older checkout, --repo)")


if __name__ == "__main__":
    main()
