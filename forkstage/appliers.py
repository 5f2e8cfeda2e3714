"""What changes infrastructure for a pipeline: forkstage's engine, or cdktf-cli / cdktn-cli.

The pipeline (``forkstage.pipeline``) runs guards, synth, init and the checks; the step that
applies is injected as an ``Applier``. Both appliers stream what they run (progress lines, or the
CLI's own output) and stop it gracefully on an interrupt (``forkstage.interrupts``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from forkstage import guards, interrupts
from forkstage.errors import BadInput, Failed
from forkstage.runner import StageRun
from forkstage.tfevents import apply_seconds, change_summary, planned_changes

MIGRATIONS = "terraform_data.migrations"


@dataclass
class DestroyPlan:
    """A checked plan (destroy, or deploy of a guarded stage): its file in the stack folder, the
    changes it holds, and the guarded resources it was allowed to delete or replace (their
    ``prevent_destroy`` is lifted for a cdktf-cli run of it)."""

    file: str
    changes: list[dict[str, str]]
    lift: list[str] = field(default_factory=list)


@dataclass
class Applied:
    """What an applier did: Terraform's counts (add/change/remove) and the changes it made."""

    counts: dict[str, int]
    changes: list[dict[str, str]] = field(default_factory=list)


class Applier(Protocol):
    """The step that changes infrastructure, run after the pipeline's guards, synth and init."""

    def apply(self, run: StageRun) -> Applied: ...

    def apply_checked(self, run: StageRun, plan: DestroyPlan) -> Applied: ...

    def destroy(self, run: StageRun, plan: DestroyPlan) -> Applied: ...


class EngineApplier:
    """forkstage's pinned engine: ``apply -json``, and a destroy that applies the checked plan."""

    def apply(self, run: StageRun, *extra: str) -> Applied:
        """``extra``: more ``apply`` arguments, e.g. ``reset``'s ``-replace=...``."""
        with run.reporter.phase("apply", "terraform apply"):
            proc = run.terraform(
                "apply",
                "-auto-approve",
                "-input=false",
                "-json",
                f"-lock-timeout={run.lock_timeout}",
                *extra,
            )
        run.check(proc, "apply")
        migrations = apply_seconds(proc.stdout, MIGRATIONS)
        if migrations is not None:
            run.reporter.phases["migrations"] = migrations  # part of the apply, shown apart
        return Applied(change_summary(proc.stdout), planned_changes(proc.stdout))

    def apply_checked(self, run: StageRun, plan: DestroyPlan) -> Applied:
        """Apply a deploy plan forkstage has checked (a guarded stage's)."""
        with run.reporter.phase("apply", "terraform apply"):
            proc = run.terraform(
                "apply", "-input=false", "-json", f"-lock-timeout={run.lock_timeout}", plan.file
            )
        run.check(proc, "apply")
        migrations = apply_seconds(proc.stdout, MIGRATIONS)
        if migrations is not None:
            run.reporter.phases["migrations"] = migrations
        return Applied(change_summary(proc.stdout), plan.changes)

    def destroy(self, run: StageRun, plan: DestroyPlan) -> Applied:
        with run.reporter.phase("apply", "terraform destroy"):
            proc = run.terraform(
                "apply", "-input=false", "-json", f"-lock-timeout={run.lock_timeout}", plan.file
            )
        run.check(proc, "destroy")
        return Applied(change_summary(proc.stdout), plan.changes)


class CdktfApplier:
    """The project's own cdktf-cli (``cdktf deploy|destroy``) on the prepared workspace, or
    CDK Terrain's cdktn-cli (``cli="cdktn"``): the same commands, options and output.

    cdktf-cli reports no machine-readable counts, so they come from the state's resource count
    before and after.
    """

    def __init__(self, timeout: float = 900, cli: str = "cdktf") -> None:
        self.timeout = timeout
        self.cli = cli

    def cdktf(self, run: StageRun, command: str) -> interrupts.Streamed:
        """Run ``cdktf <command>`` on this stage, workspace already prepared; its output is
        shown as it comes, and an interrupt stops it like a Terraform run."""
        cli = self.cli
        binary = run.project.root / "node_modules" / ".bin" / cli
        if not binary.exists():
            raise BadInput(
                f"missing {cli}-cli for --via {cli}: run `npm install` in {run.project.root}"
            )
        env = run.env()
        env.update({"FORKSTAGE_PREPARED": run.stage.name, "CI": "1", "FORCE_COLOR": "0"})
        argv = [str(binary), command, run.stage.stack_id, "--auto-approve"]
        started = time.time()
        try:
            done = interrupts.stream(
                [*argv, "--output", str(run.workdir)],
                cwd=run.project.root,
                env=env,
                on_line=run.reporter.passthrough,
                timeout=self.timeout,
            )
        except Failed:
            raise Failed(
                f"{cli} {command} of {run.stage.name} did not finish within {self.timeout:.0f}s"
            ) from None
        if done.signum is not None:
            run.cdktf_interrupted(done, started)
        return done

    def apply_checked(self, run: StageRun, plan: DestroyPlan) -> Applied:
        # the plan was only for the check: cdktf-cli plans (and runs) its own
        (run.stack_dir / plan.file).unlink(missing_ok=True)
        with guards.lifted(run.stack_dir, plan.lift):
            return self.apply(run)

    def apply(self, run: StageRun) -> Applied:
        before = run.resources()
        with run.reporter.phase("apply", f"{self.cli} deploy"):
            proc = self.cdktf(run, "deploy")
        run.check(proc, f"{self.cli} deploy")
        after = run.resources()
        return Applied(
            {"add": max(after - before, 0), "change": 0, "remove": max(before - after, 0)}
        )

    def destroy(self, run: StageRun, plan: DestroyPlan) -> Applied:
        # the plan was only for the check: cdktf-cli plans (and runs) its own destroy
        (run.stack_dir / plan.file).unlink(missing_ok=True)
        before = run.resources()
        guarded = guards.guarded_addresses(run.stack_dir)
        with (
            run.reporter.phase("apply", f"{self.cli} destroy"),
            guards.lifted(run.stack_dir, guarded),
        ):
            proc = self.cdktf(run, "destroy")
        run.check(proc, f"{self.cli} destroy")
        return Applied({"add": 0, "change": 0, "remove": before})


def applier_for(via: str) -> Applier:
    """The applier behind ``--via engine|cdktf|cdktn``."""
    return CdktfApplier(cli=via) if via in ("cdktf", "cdktn") else EngineApplier()
