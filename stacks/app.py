"""The app: one ``AppStack`` class for every stage (the seed's NeonDb + Hyperdrive + Api).

A referencing stage differs only in its project line: a ``NeonProjectRef`` to the owner's
project instead of a ``NeonProject``. Everything below that line is the same for every stage.
"""

from __future__ import annotations

from constructs import Construct

from cdk.cloudflare import Hyperdrive, Worker
from cdk.core import App
from cdk.neon import NeonBranch, NeonProject, NeonProjectRef
from cdk.settings import Settings
from cdk.stack import ForkstageStack
from cdk.stage import Stage


class AppStack(ForkstageStack):
    """Everything one stage deploys."""

    def __init__(self, scope: Construct, *, stage: Stage, settings: Settings) -> None:
        super().__init__(scope, stage=stage, settings=settings)
        project = (
            NeonProjectRef(self, "db", stage=settings.owner_stage)
            if stage.is_referencing
            else NeonProject(self, "db")
        )
        branch = NeonBranch(
            self, "branch", project=project, migrations_dir=settings.migrations_path
        )
        hyperdrive = Hyperdrive(self, "hyperdrive", origin=branch.origin)
        worker = Worker(
            self, "api", source=settings.worker_path / "dist" / "index.js", hyperdrive=hyperdrive
        )
        self.output("hyperdrive_id", hyperdrive.id)
        self.output("worker_name", worker.name)


def stages_to_synth(settings: Settings, stage_name: str | None) -> list[Stage]:
    """The named stage alone, else the long-lived stages.

    One stack when a stage is named, so a bare ``cdktf deploy|destroy|diff`` acts on that stage
    and nothing else; the long-lived ones when none is (``cdktf list``, overviews).
    """
    names = [stage_name] if stage_name else list(dict.fromkeys(settings.long_lived))
    return [settings.parse_stage(n) for n in names]


def build_app(settings: Settings, stage_name: str | None, *, outdir: str | None = None) -> App:
    """The cdktf App for ``main.py`` and ``forkstage synth`` alike (identical output)."""
    app = App(outdir=outdir) if outdir else App()
    for stage in stages_to_synth(settings, stage_name):
        AppStack(app, stage=stage, settings=settings)
    return app
