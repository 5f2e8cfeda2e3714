"""Deploy, plan and destroy one stage: guards, synth, init, then the engine or cdktf-cli.

There is one pipeline; only the step that changes infrastructure differs between forkstage's
own engine run and ``--via cdktf``, and it is injected as an ``Applier`` (``forkstage.appliers``).
Guards, synth, init, the destroy-plan check, the owner-serial check, the workspace deletion and
the run record happen here, once, whichever applies.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

from forkstage import guards, preflight
from forkstage.appliers import (
    MIGRATIONS,
    Applied,
    Applier,
    CdktfApplier,
    DestroyPlan,
    EngineApplier,
    applier_for,
)
from forkstage.errors import Failed, Refused
from forkstage.local_workers import wait_for_worker
from forkstage.report import Reporter
from forkstage.runner import StageRun
from forkstage.runs import RunResult, record_run, running
from forkstage.tfevents import change_summary, planned_changes

# the appliers' names stay importable from here, where they lived before forkstage.appliers
__all__ = [
    "Applied",
    "Applier",
    "CdktfApplier",
    "DestroyPlan",
    "EngineApplier",
    "Pipeline",
    "applier_for",
]

PLAN_FILE = "destroy.tfplan"
DEPLOY_PLAN_FILE = "deploy.tfplan"
# What ``reset`` replaces: the branch (forked again from the owner's as it is now), its endpoint
# and the migrations step. The role-password data source is re-read because its inputs change.
RESET_TYPES = ("neon_branch", "neon_endpoint")


class Pipeline:
    """deploy / plan / destroy of one stage, with ``applier`` doing the infrastructure step.

    Each first says its target and, on the cloud target, runs the preflight (``live``: also the
    API calls; ``--no-preflight`` turns them off) before the backend, synth or init.
    """

    def __init__(
        self,
        run: StageRun,
        applier: Applier | None = None,
        *,
        live_preflight: bool = True,
        allow_replace: bool = False,
    ) -> None:
        """``allow_replace``: a deploy may delete or replace the stage's guarded resources
        (``prevent_destroy`` in its config: the owner's and protected stages' project and
        branch); without it such a plan is refused before anything is applied."""
        self.run = run
        self.applier: Applier = applier or EngineApplier()
        self.live_preflight = live_preflight
        self.allow_replace = allow_replace
        self.target = preflight.target_line(run.settings)
        self._begun = False

    def begin(self, *, deploying: str | None = None) -> None:
        """The target first, then the preflight: a refusal leaves nothing written. Once per
        pipeline (a cascaded destroy comes back here for the owner)."""
        if self._begun:
            return
        self.run.reporter.target(self.target)
        # its cdktf-cli (cdktn-cli) is checked up front
        cli = self.applier.cli if isinstance(self.applier, CdktfApplier) else False
        preflight.preflight(
            self.run.settings, live=self.live_preflight, cdktf=cli, deploying=deploying
        )
        self._begun = True

    @contextlib.contextmanager
    def _prepared(self) -> Iterator[None]:
        """Target and preflight, backend up, owner guard, synth, then init and workspace; the
        body runs inside the same Terraform session (the local target's own lock file)."""
        run = self.run
        self.begin()
        run.start_backend()
        guards.check_owner_deployed(run.stage, run.reader)
        run.synth()
        with run.session():
            run.init()
            yield

    def prepare(self) -> None:
        """Ready for any Terraform or cdktf-cli run on the stage (what ``forkstage env`` leaves
        behind for a person)."""
        with self._prepared():
            pass

    def deploy(self) -> RunResult:
        run, started = self.run, time.perf_counter()
        self.begin(deploying=run.stage.name)  # a first preview deploy counts Hyperdrives
        with running(run.home, run.stage.name, "deploy"), self._prepared():
            guarded = guards.guarded_addresses(run.stack_dir)
            if not guarded:
                applied = self.applier.apply(run)
            else:
                plan = self._deploy_plan(guarded)
                try:
                    applied = self.applier.apply_checked(run, plan)
                finally:
                    (run.stack_dir / plan.file).unlink(missing_ok=True)
        outputs = self._deployed_outputs()  # before the result: the Worker's start is timed
        result = self._result("deploy", started, applied)
        result.outputs = outputs
        record_run(run.home, self._stamped(result))
        return result

    def plan(self) -> RunResult:
        """Always the engine's ``plan -json``: cdktf-cli's diff is no machine-readable plan."""
        run, started = self.run, time.perf_counter()
        self.begin()  # a refused preflight writes nothing (not even the pid file's folder)
        with (
            running(run.home, run.stage.name, "plan"),
            self._prepared(),
            run.reporter.phase("plan", "terraform plan"),
        ):
            # a plan applies nothing: it shows a guarded replacement instead of failing on it
            guarded = guards.guarded_addresses(run.stack_dir)
            with guards.lifted(run.stack_dir, guarded):
                proc = run.terraform(
                    "plan", "-input=false", "-json", f"-lock-timeout={run.lock_timeout}"
                )
        run.check(proc, "plan")
        return self._result(
            "plan", started, Applied(change_summary(proc.stdout), planned_changes(proc.stdout))
        )

    def reset(self) -> RunResult:
        """Fork a referencing stage's branch again from its owner's branch as it is now: one
        engine apply with ``-replace`` on the branch, its endpoint and the migrations step, so
        state stays the truth; the Hyperdrive's origin updates in place. Refused (nothing run)
        for an owner stage and for a stage without state; the owner's serial must not move."""
        run, started = self.run, time.perf_counter()
        if not run.stage.owner:
            raise Refused(
                f"stage {run.stage.name} owns its branch: only a preview stage (pr-N) is reset"
            )
        self.begin()
        run.start_backend()
        if not guards.has_state(run.stage, run.reader):
            raise Refused(
                f"stage {run.stage.name} is not deployed: deploy it first "
                f"(forkstage deploy --stage {run.stage.name})"
            )
        before = run.owner_serial()
        with running(run.home, run.stage.name, "reset"), self._prepared():
            replace = [f"-replace={address}" for address in self._reset_addresses()]
            applied = EngineApplier().apply(run, *replace)  # always the engine: -replace
        outputs = self._deployed_outputs()
        result = self._result("reset", started, applied)
        result.outputs = outputs
        after = run.owner_serial()
        result.owner_serial = {"before": before, "after": after}
        if before != after:
            raise Failed(
                f"the state of {run.stage.owner} changed during the reset of "
                f"{run.stage.name} (serial {before} -> {after})"
            )
        record_run(run.home, self._stamped(result))
        return result

    def destroy(
        self, *, force: bool = False, cascade: bool = False, strict: bool = False
    ) -> RunResult:
        """Destroy the stage; one without state is a no-op (``strict``: refused), and an owner
        still referenced is refused before anything runs (``cascade``: its referencing stages
        are destroyed first, each through this same path)."""
        run, started = self.run, time.perf_counter()
        self.begin()
        run.start_backend()
        if strict:
            guards.check_has_state(run.stage, run.reader)
        elif not guards.has_state(run.stage, run.reader):
            return RunResult(
                stage=run.stage.name,
                operation="destroy",
                target=self.target,
                nothing_to_destroy=True,
                seconds=time.perf_counter() - started,
                phases=dict(run.reporter.phases),
                finished_at=time.time(),
            )
        dependents = guards.check_destroy_allowed(
            run.project, run.stage, run.reader, force=force, cascade=cascade
        )
        if dependents:
            cascaded = [self._destroy_dependent(name, force=force) for name in dependents]
            result = self.destroy(force=force)  # guarded again: nothing references it now
            result.cascaded = cascaded
            return result
        before = run.owner_serial()
        run.synth()
        with running(run.home, run.stage.name, "destroy"), run.session():
            run.init()
            plan = self._destroy_plan()
            try:
                applied = self.applier.destroy(run, plan)
            finally:
                (run.stack_dir / plan.file).unlink(missing_ok=True)
            run.delete_workspace()
        result = self._result("destroy", started, applied)
        if run.stage.owner:
            after = run.owner_serial()
            result.owner_serial = {"before": before, "after": after}
            guards.check_owner_untouched(run.stage, before, after)
        record_run(run.home, self._stamped(result))
        return result

    # -- parts ---------------------------------------------------------------------------------
    def _destroy_dependent(self, name: str, *, force: bool) -> RunResult:
        """``--cascade``: one referencing stage, destroyed through its own guarded pipeline."""
        run = self.run
        reporter = Reporter(
            quiet=run.reporter.quiet,
            progress=run.reporter.progress,
            on_terraform_output=run.reporter.on_terraform_output,
        )
        other = StageRun(
            run.project,
            run.project.parse_stage(name),
            reporter=reporter,
            lock_timeout=run.lock_timeout,
        )
        # the same settings and credentials: the live preflight has already answered
        return Pipeline(other, self.applier, live_preflight=False).destroy(force=force)

    def _deploy_plan(self, guarded: list[str]) -> DestroyPlan:
        """A guarded stage's deploy: plan into a file with the guard lifted, refuse (nothing
        applied) a plan that deletes or replaces a guarded resource unless ``allow_replace``,
        naming the attributes that force it (``show -json`` of the plan, only then)."""
        run = self.run
        with run.reporter.phase("plan", "terraform plan"), guards.lifted(run.stack_dir, guarded):
            proc = run.terraform(
                "plan",
                "-input=false",
                "-json",
                f"-out={DEPLOY_PLAN_FILE}",
                f"-lock-timeout={run.lock_timeout}",
            )
        try:
            run.check(proc, "plan")
            changes = planned_changes(proc.stdout)
            touched = guards.guarded_changes(changes, guarded)
            if touched and not self.allow_replace:
                shown = run.terraform("show", "-json", DEPLOY_PLAN_FILE)
                run.check(shown, "show plan")
                forcing = guards.forcing_attributes(json.loads(shown.stdout or "{}"))
                raise guards.refuse_replacement(run.stage, touched, forcing)
            if touched:  # allowed, but never under live forks: Neon refuses, halfway through
                guards.check_not_referenced(run.project, run.stage, run.reader)
        except BaseException:
            (run.stack_dir / DEPLOY_PLAN_FILE).unlink(missing_ok=True)
            raise
        return DestroyPlan(DEPLOY_PLAN_FILE, changes, lift=[c["address"] for c in touched])

    def _stamped(self, result: RunResult) -> RunResult:
        """The run record notes the state it left, so readers can tell when it went stale."""
        state = self.run.reader.state(self.run.stage.name)
        result.state_serial = state.serial if state is not None else None
        result.state_lineage = state.lineage if state is not None else ""
        return result

    def _reset_addresses(self) -> list[str]:
        """The stage's own branch, endpoint and migrations step, read from its synthesized JSON
        by type (the owner's branch is a data source there, never a resource)."""
        synthesized = json.loads((self.run.stack_dir / "cdk.tf.json").read_text())
        resources: dict[str, dict[str, Any]] = synthesized.get("resource", {})
        addresses = [
            f"{kind}.{name}" for kind in RESET_TYPES for name in sorted(resources.get(kind, {}))
        ]
        addresses += [
            f"terraform_data.{name}"
            for name in sorted(resources.get("terraform_data", {}))
            if f"terraform_data.{name}".startswith(MIGRATIONS)
        ]
        if not any(a.startswith("neon_branch.") for a in addresses):
            raise Failed(f"stage {self.run.stage.name} has no branch of its own to reset")
        return addresses

    def _destroy_plan(self) -> DestroyPlan:
        """Plan the destroy into a file and check its changes before anything is deleted.

        No refresh: whatever is already gone is dropped from state by the providers, and the
        check reads the plan's own ``planned_change`` events (no extra ``show -json``).
        """
        run = self.run
        guarded = guards.guarded_addresses(run.stack_dir)
        # lifted after the guards above: the plan is checked below, its file applied as is
        with run.reporter.phase("plan", "destroy plan"), guards.lifted(run.stack_dir, guarded):
            proc = run.terraform(
                "plan",
                "-destroy",
                "-refresh=false",
                "-input=false",
                "-json",
                f"-out={PLAN_FILE}",
                f"-lock-timeout={run.lock_timeout}",
            )
        run.check(proc, "destroy plan")
        changes = planned_changes(proc.stdout)
        guards.check_destroy_plan(run.stage, changes)
        return DestroyPlan(PLAN_FILE, changes)

    def _deployed_outputs(self) -> dict[str, Any]:
        """The stage's outputs after an apply; on the local target also ``local_url`` (where
        the local cloud serves the Worker), once the Worker that the Cloudflare stand-in
        (re)started during the apply answers."""
        run = self.run
        outputs = run.outputs()
        if run.local and outputs.get("worker_name"):
            with run.reporter.phase("worker", "worker ready"):
                name = str(outputs["worker_name"])
                outputs["local_url"] = wait_for_worker(run.home, run.stage.name, name)
        return outputs

    def _result(self, operation: str, started: float, applied: Applied) -> RunResult:
        run = self.run
        return RunResult(
            stage=run.stage.name,
            operation=operation,
            target=self.target,
            added=applied.counts["add"],
            changed=applied.counts["change"],
            destroyed=applied.counts["remove"],
            seconds=time.perf_counter() - started,
            phases=dict(run.reporter.phases),
            changes=applied.changes,
            finished_at=time.time(),
        )
