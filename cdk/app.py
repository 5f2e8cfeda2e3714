"""``ForkstageApp``: the cdktf App of a forkstage project, with the prepared-shell gate.

The stage comes from the environment (``FORKSTAGE_STAGE``, or ``STAGE`` for a plain
`npx cdktf synth`); a named stage is synthesized alone, so a bare `cdktf deploy|destroy|diff`
acts on it and on nothing else. Unless the shell was prepared for a stack's stage
(``FORKSTAGE_PREPARED=<stage>``, set by `forkstage env` and by forkstage's own runs), a gate file
is written beside its cdk.tf.json: unprepared, cdktf would run whatever `terraform` is on PATH,
without the pinned engine, the stage's credentials or its workspace. The cdk.tf.json itself is the
same either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cdk.core import App
from cdk.settings import Settings
from cdk.stage import Stage, StageError

GATE_FILE = "forkstage-env.tf"
# A version constraint no engine meets: every Terraform stops with this one error block, at
# init as at plan, before the backend or any provider is touched; the block's source line (the
# one Terraform quotes) names the command.
GATE = """\
# Written by forkstage's cdktf app: this shell was not prepared for stage {stage}, so Terraform
# would run without the pinned engine, the stage's credentials and its workspace. A synth in a
# prepared shell removes this file.
terraform {{
  required_version = "= 0.0.0" # not prepared: run  eval "$(forkstage env --stage {stage})"  first
}}
"""


def named_stage(environ: Mapping[str, str]) -> str | None:
    """``FORKSTAGE_STAGE`` or ``STAGE``; both naming different stages is an error, not a choice."""
    wrapper, plain = environ.get("FORKSTAGE_STAGE") or None, environ.get("STAGE") or None
    if wrapper and plain and wrapper != plain:
        raise StageError(
            f"FORKSTAGE_STAGE={wrapper} and STAGE={plain} name different stages: for {plain} run "
            f'eval "$(forkstage env --stage {plain})" (or unset STAGE to use {wrapper})'
        )
    return wrapper or plain


def stages_to_synth(settings: Settings, stage_name: str | None) -> list[Stage]:
    """The named stage alone, else the long-lived stages (``cdktf list``, overviews)."""
    names = [stage_name] if stage_name else list(dict.fromkeys(settings.long_lived))
    return [settings.parse_stage(n) for n in names]


def gate_text(stage: str) -> str:
    return GATE.format(stage=stage)


def write_gates(outdir: Path, stages: list[str], prepared: str | None) -> None:
    """Beside each stack's cdk.tf.json: the gate file unless this shell was prepared for it."""
    for stage in stages:
        gate = outdir / "stacks" / f"stack-{stage}" / GATE_FILE
        if stage == prepared:
            gate.unlink(missing_ok=True)
        elif gate.parent.is_dir():
            gate.write_text(gate_text(stage))


class ForkstageApp(App):
    """A cdktf App whose ``synth`` also writes (or removes) each forkstage stack's gate file."""

    def __init__(self, *, prepared: str | None = None, outdir: str | None = None) -> None:
        super().__init__(outdir=outdir) if outdir else super().__init__()
        self.prepared = prepared
        self.stages: list[str] = []

    def forkstage_stage_added(self, stage: str) -> None:
        """Called by every ``ForkstageStack`` made directly in this App: its gate is ours."""
        self.stages.append(stage)

    def synth(self) -> None:
        super().synth()
        write_gates(Path(self.outdir), self.stages, self.prepared)
