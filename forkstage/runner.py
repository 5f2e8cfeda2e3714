"""Deploy, plan and destroy one stage: synth -> init -> workspace -> engine, with guards first.

Each stage gets its own work folder under FORKSTAGE_HOME, so pipelines for pr-147 and pr-148 can
run at once; Terraform's S3 lock keeps two runs of the same stage apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cdk.stage import Stage
from forkstage import embedded
from forkstage.context import Project
from forkstage.engine import run_terraform, terraform_env
from forkstage.errors import Failed, Refused
from forkstage.report import Reporter
from forkstage.state import StateReader, admin_env, stage_env

# Resource types only an owner stage may ever delete (a referencing stage must never plan it).
OWNER_ONLY_TYPES = frozenset({"neon_project"})
# Terraform's machine-readable diagnostics carry the message we show on failure.
_ERROR_LEVELS = {"error"}


@dataclass
class RunResult:
    """What one operation did, for the summary and --json."""

    stage: str
    operation: str
    ok: bool = True
    added: int = 0
    changed: int = 0
    destroyed: int = 0
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    owner_serial: dict[str, int | None] = field(default_factory=dict)
    changes: list[dict[str, str]] = field(default_factory=list)
    finished_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = round(self.seconds, 3)
        data["phases"] = {k: round(v, 3) for k, v in self.phases.items()}
        return data


def json_events(stdout: str, marker: str = "") -> Iterator[dict[str, Any]]:
    """The machine-readable events of a ``-json`` run (lines holding ``marker``, if given)."""
    for line in stdout.splitlines():
        if not line.startswith("{") or marker not in line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


def terraform_error(stdout: str, stderr: str) -> str:
    """The error lines of a failed run (JSON diagnostics or Terraform's human output)."""
    messages: list[str] = []
    for event in json_events(stdout):
        if event.get("@level") in _ERROR_LEVELS:
            diag = event.get("diagnostic") or {}
            text = diag.get("summary") or event.get("@message", "")
            detail = (diag.get("detail") or "").strip()
            messages.append(f"{text}: {detail}" if detail else text)
    if messages:
        return "\n".join(messages)
    text = "\n".join(x.rstrip() for x in (stderr or stdout).strip().splitlines())
    return text or "terraform failed without a message"


def change_summary(stdout: str) -> dict[str, int]:
    """Counts from the ``change_summary`` event of ``apply -json`` / ``plan -json``."""
    counts = {"add": 0, "change": 0, "remove": 0}
    for event in json_events(stdout, '"change_summary"'):
        changes = event.get("changes") or {}
        counts = {k: int(changes.get(k, 0)) for k in counts}
    return counts


def planned_changes(stdout: str) -> list[dict[str, str]]:
    """Managed-resource ``planned_change`` events of ``plan``/``apply -json``."""
    changes = []
    for event in json_events(stdout, '"planned_change"'):
        change = event.get("change") or {}
        resource = change.get("resource") or {}
        if resource.get("mode") == "data" or str(resource.get("addr", "")).startswith("data."):
            continue  # reads of data sources are not changes
        changes.append(
            {
                "address": str(resource.get("addr", "")),
                "type": str(resource.get("resource_type", "")),
                "action": str(change.get("action", "")),
            }
        )
    return sorted(changes, key=lambda c: c["address"])


def apply_seconds(stdout: str, address_prefix: str) -> float | None:
    """Wall time between ``apply_start`` and ``apply_complete`` of matching resources."""
    from datetime import datetime

    starts: dict[str, datetime] = {}
    total = 0.0
    found = False
    for event in json_events(stdout, '"apply_'):
        try:
            addr = str(event["hook"]["resource"]["addr"])
            moment = datetime.fromisoformat(str(event["@timestamp"]).replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError):
            continue
        if not addr.startswith(address_prefix):
            continue
        if event.get("type") == "apply_start":
            starts[addr] = moment
        elif event.get("type") == "apply_complete" and addr in starts:
            total += (moment - starts.pop(addr)).total_seconds()
            found = True
    return total if found else None


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

    # -- guards (all before Terraform runs) ------------------------------------------------------
    def check_owner_deployed(self) -> None:
        """A referencing stage needs its owner's outputs; without them Terraform would write an
        empty state into the owner's workspace and then fail."""
        if not self.stage.owner:
            return
        owner = self.reader.state(self.stage.owner)
        if owner is None or not owner.outputs:
            raise Refused(
                f"stage {self.stage.name} references {self.stage.owner}, which is not deployed: "
                f"deploy it first (forkstage deploy --stage {self.stage.owner})"
            )

    def check_destroy_allowed(self, *, force: bool) -> None:
        if force:
            return
        if self.stage.name in self.settings.protected:
            raise Refused(
                f"stage {self.stage.name} is protected: pass --force to destroy it anyway"
            )
        if self.stage.is_referencing:
            return
        dependents = []
        for name in self.reader.stages():
            if name == self.stage.name:
                continue
            other = self.project.parse_stage_or_none(name)
            if other is not None and other.owner == self.stage.name:
                state = self.reader.state(name)
                if state is not None and state.resources > 0:
                    dependents.append(name)
        if dependents:
            raise Refused(
                f"stage {self.stage.name} is referenced by {', '.join(dependents)}: destroy "
                "those first, or pass --force"
            )

    # -- steps ---------------------------------------------------------------------------------
    def synth(self) -> Path:
        """Run the project's cdktf app for this stage only, into the stage's work folder."""
        from forkstage.commands.synth import run_app

        with self.reporter.phase("synth", "synth"):
            run_app(
                self.project,
                self.stage.name,
                self.workdir,
                only=True,
                env=self.env(workspace=False),
            )
        return self.stack_dir

    def terraform(
        self, *args: str, workspace: bool = True, admin: bool = False
    ) -> subprocess.CompletedProcess[str]:
        env = self.env(workspace=workspace)
        if admin:
            # init looks at the default workspace's key, which a stage-scoped key may not read
            env.update(admin_env(self.backend, self.home))
        return run_terraform(args, cwd=self.stack_dir, env=env)

    def _check(self, proc: subprocess.CompletedProcess[str], what: str) -> None:
        if proc.returncode != 0:
            raise Failed(
                f"{what} failed for {self.stage.name}: {terraform_error(proc.stdout, proc.stderr)}"
            )

    def init(self) -> None:
        """``init`` and ``workspace select -or-create``, never interactive.

        Done before cdktf-cli ever runs: its init prompts forever when TF_WORKSPACE names a
        workspace that does not exist yet.
        """
        with self.reporter.phase("init", "terraform init"):
            self._check(
                self.terraform("init", "-input=false", "-no-color", workspace=False, admin=True),
                "init",
            )
        with self.reporter.phase("workspace", f"workspace {self.stage.workspace}"):
            self._check(
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

    def prepare(self) -> None:
        self.start_backend()
        self.synth()
        self.init()

    def owner_serial(self) -> int | None:
        if not self.stage.owner:
            return None
        state = self.reader.state(self.stage.owner)
        return state.serial if state else None

    # -- operations ----------------------------------------------------------------------------
    def deploy(self) -> RunResult:
        started = time.perf_counter()
        self.start_backend()
        self.check_owner_deployed()
        self.synth()
        self.init()
        with self.reporter.phase("apply", "terraform apply"):
            proc = self.terraform(
                "apply",
                "-auto-approve",
                "-input=false",
                "-json",
                f"-lock-timeout={self.lock_timeout}",
            )
        self._check(proc, "apply")
        migrations = apply_seconds(proc.stdout, "terraform_data.migrations")
        if migrations is not None:
            self.reporter.phases["migrations"] = migrations  # part of the apply, shown apart
        outputs = self.deployed_outputs()  # before the result: the Worker's start is timed
        result = self._result("deploy", started, change_summary(proc.stdout))
        result.changes = planned_changes(proc.stdout)
        result.outputs = outputs
        self.record(result)
        return result

    # -- the local cloud serves a stage's Worker while the stage is up -------------------------
    def deployed_outputs(self) -> dict[str, Any]:
        """The stage's outputs after an apply; on the local target its Worker is (re)started
        so the deploy ends with a live ``worker_url``."""
        outputs = self.outputs()
        if self.settings.target == "local" and outputs.get("worker_name"):
            from forkstage.commands.local import serve_stage_worker, stop_stage_worker

            with self.reporter.phase("worker", "worker ready"):
                stop_stage_worker(self.home, self.stage.name)  # new code or bindings: afresh
                worker = serve_stage_worker(self.project, self.stage.name)
            outputs["worker_url"] = str(worker.url).rstrip("/")
        return outputs

    def stop_local_worker(self) -> None:
        if self.settings.target != "local":
            return
        from forkstage.commands.local import stop_stage_worker

        stop_stage_worker(self.home, self.stage.name)

    def plan(self) -> RunResult:
        started = time.perf_counter()
        self.start_backend()
        self.check_owner_deployed()
        self.synth()
        self.init()
        with self.reporter.phase("plan", "terraform plan"):
            proc = self.terraform(
                "plan", "-input=false", "-json", f"-lock-timeout={self.lock_timeout}"
            )
        self._check(proc, "plan")
        result = self._result("plan", started, change_summary(proc.stdout))
        result.changes = planned_changes(proc.stdout)
        return result

    def destroy(self, *, force: bool = False) -> RunResult:
        started = time.perf_counter()
        self.start_backend()
        self.check_destroy_allowed(force=force)
        if self.stage.workspace not in self.reader.stages():
            raise Refused(
                f"stage {self.stage.name} has no state in the backend: nothing to destroy"
            )
        before = self.owner_serial()
        self.stop_local_worker()
        self.synth()
        self.init()
        plan_file = "destroy.tfplan"
        changes = self.destroy_plan(plan_file)
        with self.reporter.phase("apply", "terraform destroy"):
            proc = self.terraform(
                "apply", "-input=false", "-json", f"-lock-timeout={self.lock_timeout}", plan_file
            )
        self._check(proc, "destroy")
        (self.stack_dir / plan_file).unlink(missing_ok=True)
        self.delete_workspace()
        result = self._result("destroy", started, change_summary(proc.stdout))
        result.changes = changes
        self._confirm_owner_untouched(result, before)
        self.record(result)
        return result

    # -- the same operations through cdktf-cli -------------------------------------------------
    def cdktf(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Run the project's local cdktf-cli on this stage, workspace already prepared."""
        binary = self.project.root / "node_modules" / ".bin" / "cdktf"
        if not binary.exists():
            raise Failed("cdktf-cli is not installed in this project: run `make install`")
        env = self.env()
        env.update({"FORKSTAGE_SYNTH_ONLY": "1", "CI": "1", "FORCE_COLOR": "0"})
        try:
            return subprocess.run(
                [
                    str(binary),
                    *args,
                    self.stage.stack_id,
                    "--auto-approve",
                    "--output",
                    str(self.workdir),
                ],
                cwd=self.project.root,
                env=env,
                text=True,
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise Failed(
                f"cdktf {args[0]} of {self.stage.name} did not finish within {timeout:.0f}s"
            ) from None

    def _resources(self) -> int:
        state = self.reader.state(self.stage.name)
        return state.resources if state else 0

    def deploy_via_cdktf(self) -> RunResult:
        started = time.perf_counter()
        self.start_backend()
        self.check_owner_deployed()
        self.synth()
        self.init()
        before = self._resources()
        with self.reporter.phase("apply", "cdktf deploy"):
            proc = self.cdktf("deploy")
        self._check(proc, "cdktf deploy")
        outputs = self.deployed_outputs()
        after = self._resources()
        counts = {"add": max(after - before, 0), "change": 0, "remove": max(before - after, 0)}
        result = self._result("deploy", started, counts)
        result.outputs = outputs
        self.record(result)
        return result

    def destroy_via_cdktf(self, *, force: bool = False) -> RunResult:
        started = time.perf_counter()
        self.start_backend()
        self.check_destroy_allowed(force=force)
        if self.stage.workspace not in self.reader.stages():
            raise Refused(
                f"stage {self.stage.name} has no state in the backend: nothing to destroy"
            )
        before_serial = self.owner_serial()
        self.stop_local_worker()
        self.synth()
        self.init()
        # checked before cdktf-cli runs its own (unchecked) destroy
        self.destroy_plan("destroy.tfplan")
        (self.stack_dir / "destroy.tfplan").unlink(missing_ok=True)
        before = self._resources()
        with self.reporter.phase("apply", "cdktf destroy"):
            proc = self.cdktf("destroy")
        self._check(proc, "cdktf destroy")
        self.delete_workspace()
        result = self._result("destroy", started, {"add": 0, "change": 0, "remove": before})
        self._confirm_owner_untouched(result, before_serial)
        self.record(result)
        return result

    def delete_workspace(self) -> None:
        with self.reporter.phase("workspace", "delete workspace"):
            self._check(
                self.terraform("workspace", "select", "default", workspace=False, admin=True),
                "workspace select",
            )
            self._check(
                self.terraform(
                    "workspace", "delete", self.stage.workspace, workspace=False, admin=True
                ),
                "workspace delete",
            )

    def _confirm_owner_untouched(self, result: RunResult, before: int | None) -> None:
        if not self.stage.owner:
            return
        after = self.owner_serial()
        result.owner_serial = {"before": before, "after": after}
        if before != after:
            raise Failed(
                f"the state of {self.stage.owner} changed during the destroy of "
                f"{self.stage.name} (serial {before} -> {after})"
            )

    def destroy_plan(self, plan_file: str) -> list[dict[str, str]]:
        """Plan the destroy into ``plan_file`` and return its changes, checked.

        No refresh: whatever is already gone is dropped from state by the providers, and the
        check reads the plan's own ``planned_change`` events (no extra ``show -json``).
        """
        with self.reporter.phase("plan", "destroy plan"):
            proc = self.terraform(
                "plan",
                "-destroy",
                "-refresh=false",
                "-input=false",
                "-json",
                f"-out={plan_file}",
                f"-lock-timeout={self.lock_timeout}",
            )
        self._check(proc, "destroy plan")
        changes = planned_changes(proc.stdout)
        self.check_destroy_plan(changes)
        return changes

    def check_destroy_plan(self, changes: list[dict[str, str]]) -> None:
        """The destroy plan may only delete this stage's own resources."""
        for change in changes:
            if change["action"] != "delete":
                raise Failed(
                    f"destroy plan for {self.stage.name} would {change['action']} "
                    f"{change['address']}: refusing"
                )
            if self.stage.is_referencing and change["type"] in OWNER_ONLY_TYPES:
                raise Failed(
                    f"destroy plan for {self.stage.name} would delete {change['address']}, "
                    f"which belongs to {self.stage.owner}: refusing"
                )

    def outputs(self) -> dict[str, Any]:
        state = self.reader.state(self.stage.name)
        return state.public_outputs() if state else {}

    def _result(self, operation: str, started: float, counts: dict[str, int]) -> RunResult:
        return RunResult(
            stage=self.stage.name,
            operation=operation,
            added=counts["add"],
            changed=counts["change"],
            destroyed=counts["remove"],
            seconds=time.perf_counter() - started,
            phases=dict(self.reporter.phases),
            finished_at=time.time(),
        )

    def record(self, result: RunResult) -> None:
        """Keep the last run per stage for ``forkstage summary``."""
        runs = self.home / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        tmp = runs / f".{self.stage.name}.json.tmp"
        tmp.write_text(json.dumps(result.to_json(), indent=2))
        os.replace(tmp, runs / f"{self.stage.name}.json")
