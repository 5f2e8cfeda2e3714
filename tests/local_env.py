"""A local cloud of its own for a test: FORKSTAGE_HOME under /tmp and its own state-server port."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from localcloud.net import free_port
from tests import procs
from tests.wrapper_env import REPO

BIN = Path(sys.executable).parent
TIMEOUT = 240


class LocalCloud:
    """The `forkstage` CLI on its own FORKSTAGE_HOME and state-server port."""

    def __init__(self, prefix: str = "forkstage-local-") -> None:
        self.home = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        self.home.chmod(0o755)  # PostgreSQL runs as the postgres user and must enter it
        self.endpoint = f"http://127.0.0.1:{free_port()}"

    def env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("FORKSTAGE_", "AWS_", "TF_"))
        }
        env.update(
            FORKSTAGE_HOME=str(self.home),
            FORKSTAGE_BACKEND_ENDPOINT=self.endpoint,
            PATH=f"{BIN}{os.pathsep}{env['PATH']}",
        )
        return env

    def start(self, *args: str) -> subprocess.Popen[str]:
        return procs.start([str(BIN / "forkstage"), *args], cwd=REPO, env=self.env())

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return procs.run([str(BIN / "forkstage"), *args], cwd=REPO, env=self.env(), timeout=TIMEOUT)

    def ok(self, *args: str) -> str:
        return self.together([args])[0]

    def together(self, commands: list[tuple[str, ...]]) -> list[str]:
        """Run the commands at once (like parallel CI jobs); every one must succeed."""
        started = [self.start(*args) for args in commands]
        return [procs.wait(proc, timeout=TIMEOUT, check=True).stdout for proc in started]

    def stages(self) -> list[str]:
        return [r["stage"] for r in json.loads(self.ok("stages", "--json"))]

    def processes(self) -> list[str]:
        """Command lines of processes that mention the home or run inside it (a Worker does)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                args = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
                )
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if args and (str(self.home) in args or Path(cwd).is_relative_to(self.home)):
                found.append(args.strip())
        return found

    def discard(self) -> None:
        """Stop every server of this home and delete it, without destroying stage by stage: for
        fixtures whose tests prove nothing about destroy (the stages' state and data live in the
        home; a Terraform destroy per stage cost the suite ~20 s a module)."""
        self.run("local", "down")
        if not self.processes():
            shutil.rmtree(self.home, ignore_errors=True)

    def clean_up(self) -> None:
        """After a failure: destroy what is left (PR stages first), stop everything."""
        for _ in range(2):
            try:
                left = self.stages()
            except AssertionError:
                break
            for stage in sorted(left, key=lambda s: s == "staging"):
                self.run("destroy", "--stage", stage, "--force", "--cascade")
        self.discard()
