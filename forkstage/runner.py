"""One stage's Terraform context: work folder, environment, credentials, state reader, steps.

Each stage gets its own work folder under FORKSTAGE_HOME, so pipelines for pr-147 and pr-148 can
run at once; Terraform's S3 lock keeps two runs of the same stage apart. What runs in which order
(guards, apply, destroy, records) is ``forkstage.pipeline``'s business; this module only knows
how to run one step for one stage.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cdk.stage import Stage
from forkstage import embedded, guards, interrupts, locks
from forkstage.context import Project
from forkstage.engine import terraform_binary, terraform_env
from forkstage.errors import Failed
from forkstage.report import Reporter, TerraformOutput
from forkstage.state import StateReader, admin_env, stage_env
from forkstage.synth import run_app
from forkstage.tfevents import lock_info, parse_event, progress, terraform_error

# Events Terraform emits only once it holds the state lock (plan, apply, destroy).
_LOCKED_EVENTS = frozenset(
    {"planned_change", "change_summary", "refresh_start", "apply_start", "resource_drift"}
)


class StageRun:
    """One stage's Terraform runs, with everything they need prepared once."""

    def __init__(
        self,
        project: Project,
        stage: Stage,
        *,
        reporter: Reporter | None = None,
        lock_timeout: str = "0s",
    ) -> None:
        self.project = project
        self.settings = project.settings
        self.backend = self.settings.backend
        self.stage = stage
        self.home = project.home
        self.reporter = reporter or Reporter(quiet=True)
        self.lock_timeout = lock_timeout
        # per target: a stand-in lock file must never meet a real provider run
        self.workdir = self.home / "work" / self.settings.target / stage.name
        self.stack_dir = self.workdir / "stacks" / stage.stack_id
        self._env: dict[str, str] | None = None
        self._reader: StateReader | None = None
        # what the current Terraform run finished so far ("created neon_branch.x"), and
        # whether it got as far as holding the state lock
        self.done: list[str] = []
        self._holds_lock = False

    @property
    def local(self) -> bool:
        """Whether this run uses the local cloud's stand-in providers."""
        return self.settings.target == "local"

    # -- environment -------------------------------------------------------------------------
    def start_backend(self) -> None:
        """Silent: guards run right after and must be the only line a refusal prints."""
        started = time.perf_counter()
        embedded.ensure_running(self.backend, self.home)
        self.reporter.phases["backend"] = time.perf_counter() - started

    @property
    def reader(self) -> StateReader:
        if self._reader is None:
            self._reader = StateReader(self.backend, self.home)
        return self._reader

    def env(self, *, workspace: bool = True) -> dict[str, str]:
        """Terraform's environment: pinned engine, own CLI config, stage-scoped credentials."""
        if self._env is None:
            reads = (self.stage.owner,) if self.stage.owner else ()
            extra = {
                "FORKSTAGE_STAGE": self.stage.name,
                "FORKSTAGE_HOME": str(self.home),
                # the local cloud's endpoint proxy, started by a stand-in, reads it
                "FORKSTAGE_LOCAL_SUSPEND_AFTER": str(self.project.settings.local_suspend_after),
                **stage_env(self.backend, self.home, self.stage.name, reads),
            }
            self._env = terraform_env(
                self.home,
                provider_installation=self.project.provider_installation(),
                extra=extra,
            )
        env = dict(self._env)
        if workspace:
            env["TF_WORKSPACE"] = self.stage.workspace
        return env

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Around init and every run that follows it: on the local target the stand-ins get a
        lock file of their own, so one left by an older launcher (or a real run) cannot make
        ``init`` fail on a checksum, and none is left behind to meet a real run."""
        if not self.local:
            yield
            return
        from localcloud.registry import isolated_lock_file

        with isolated_lock_file(self.stack_dir, self.home):
            yield

    # -- steps ---------------------------------------------------------------------------------
    def synth(self) -> Path:
        """Run the project's cdktf app for this stage only, into the stage's work folder."""
        guards.drop_lift(self.stack_dir)
        with self.reporter.phase("synth", "synth"):
            run_app(
                self.project,
                self.stage.name,
                self.workdir,
                env=self.env(workspace=False),
            )
        return self.stack_dir

    def terraform(
        self, *args: str, workspace: bool = True, admin: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """One run of the pinned engine in the stack folder, in a process group of its own:
        its ``-json`` events become progress lines as they come, observers see its output, and
        an interrupt stops it gracefully (``forkstage.interrupts``)."""
        env = self.env(workspace=workspace)
        if admin:
            # init looks at the default workspace's key, which a stage-scoped key may not read
            env.update(admin_env(self.backend, self.home))
        self._holds_lock = False
        started = time.time()
        streamed = interrupts.stream(
            [terraform_binary(), *args], cwd=self.stack_dir, env=env, on_line=self._on_line
        )
        proc = subprocess.CompletedProcess(
            [terraform_binary(), *args], streamed.returncode, streamed.stdout, streamed.stderr
        )
        self.reporter.terraform_output(
            TerraformOutput(
                stage=self.stage.name,
                args=tuple(args),
                returncode=proc.returncode,
                stdout=proc.stdout or "",
                stderr=proc.stderr or "",
            )
        )
        if streamed.signum is not None:
            self._interrupted(streamed, started)
        return proc

    def _on_line(self, line: str) -> None:
        event = parse_event(line)
        if event is None:
            return
        if event.get("type") in _LOCKED_EVENTS:
            self._holds_lock = True
        step = progress(event)
        if step is None:
            return
        if step.kind == "complete":
            self.done.append(step.done)
        self.reporter.resource(step)

    def _interrupted(
        self, streamed: interrupts.Streamed, started: float, *, tool: str = "Terraform"
    ) -> None:
        """After Terraform stopped on an interrupt: release the lock if it is still ours, say
        what was done, and raise ``Interrupted``."""
        signum = streamed.signum or 2
        lock = ""
        if self._holds_lock:
            locks.release_own(self, since=started, until=time.time())
            try:
                left = self.reader.lock(self.stage.name)
            except Failed:
                left = None
            lock = (
                f"; the state is still locked by {locks.describe(left)} (forkstage unlock "
                f"--stage {self.stage.name})"
                if left
                else "; the state lock is released"
            )
        how = "was stopped at once" if streamed.forced else "stopped gracefully"
        did = f"it had {', '.join(self.done)}" if self.done else "it had changed nothing yet"
        if streamed.forced:
            did += "; what it made since its last state write may be missing from the state"
        elif self.done:
            did += " (recorded in the state)"
        raise interrupts.Interrupted(
            f"interrupted by {interrupts.signal_name(signum)}: {tool} {how}; {did}{lock}",
            signum,
        )

    def cdktf_interrupted(self, streamed: interrupts.Streamed, started: float) -> None:
        """cdktf-cli stopped on an interrupt: its Terraform's lock is released if left."""
        self._holds_lock = True  # cdktf-cli shows no events: release_own checks holder and time
        self._interrupted(streamed, started, tool="cdktf-cli")

    def check(
        self, proc: subprocess.CompletedProcess[str] | interrupts.Streamed, what: str
    ) -> None:
        """Turn a failed run into one error naming the step and Terraform's own message; a
        lock held by another run is named with its holder and what to do about it."""
        if proc.returncode != 0:
            text = terraform_error(proc.stdout, proc.stderr)
            if "Error acquiring the state lock" in text:
                raise locks.Locked(locks.conflict_message(self, lock_info(text)))
            raise Failed(f"{what} failed for {self.stage.name}: {text}")

    def init(self) -> None:
        """``init`` and ``workspace select -or-create``, never interactive.

        Done before cdktf-cli ever runs: its init prompts forever when TF_WORKSPACE names a
        workspace that does not exist yet.
        """
        with self.reporter.phase("init", "terraform init"):
            self.check(
                self.terraform("init", "-input=false", "-no-color", workspace=False, admin=True),
                "init",
            )
        with self.reporter.phase("workspace", f"workspace {self.stage.workspace}"):
            self.check(
                self.terraform(
                    "workspace",
                    "select",
                    "-or-create=true",
                    self.stage.workspace,
                    workspace=False,
                    admin=True,
                ),
                "workspace select",
            )

    def delete_workspace(self) -> None:
        """After a destroy: the stage leaves no (empty) state object behind."""
        with self.reporter.phase("workspace", "delete workspace"):
            self.check(
                self.terraform("workspace", "select", "default", workspace=False, admin=True),
                "workspace select",
            )
            self.check(
                self.terraform(
                    "workspace", "delete", self.stage.workspace, workspace=False, admin=True
                ),
                "workspace delete",
            )

    # -- reads of the backend ------------------------------------------------------------------
    def outputs(self) -> dict[str, Any]:
        """The stage's non-sensitive outputs as stored in its state."""
        state = self.reader.state(self.stage.name)
        return state.public_outputs() if state else {}

    def resources(self) -> int:
        """How many managed resource instances the stage's state holds."""
        state = self.reader.state(self.stage.name)
        return state.resources if state else 0

    def owner_serial(self) -> int | None:
        """The owner's state serial (None for an owner stage or an owner without state)."""
        if not self.stage.owner:
            return None
        state = self.reader.state(self.stage.owner)
        return state.serial if state else None
