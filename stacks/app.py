"""The app: one ``AppStack`` class for every stage (the seed's NeonDb + Hyperdrive + Api).

A referencing stage differs only in what it is given: a ``NeonProjectRef`` instead of a
``NeonProject``. Everything below the project line is the same for every stage.
"""

from __future__ import annotations

from cdktf import App, TerraformOutput, TerraformStack
from constructs import Construct

from cdk.backend import add_s3_backend
from cdk.cloudflare import Hyperdrive, PostgresOrigin, Worker
from cdk.guard import WorkspaceGuard
from cdk.migrations import BranchMigrations
from cdk.neon import NeonBranch, NeonProject, NeonProjectRef, ProjectLike
from cdk.providers.generated.cloudflare import CloudflareProvider
from cdk.providers.generated.neon import NeonProvider
from cdk.settings import Settings
from cdk.stage import Stage

# Stage outputs every stage publishes (names pinned: `forkstage outputs/summary` read them).
STAGE_OUTPUTS = ("hyperdrive_id", "worker_name", "stage")


class AppStack(TerraformStack):
    """Everything one stage deploys."""

    def __init__(self, scope: Construct, *, stage: Stage, settings: Settings) -> None:
        super().__init__(scope, stage.stack_id)
        self.stage = stage
        add_s3_backend(self, settings.backend)
        guard = WorkspaceGuard(self, "workspace", workspace=stage.workspace)
        NeonProvider(self, "neon")
        CloudflareProvider(self, "cloudflare")

        project: ProjectLike
        parent_id: str | None = None
        if stage.is_referencing and stage.owner:
            ref = NeonProjectRef(self, "db", owner_stage=stage.owner, backend=settings.backend)
            guard.protect(ref.ref.remote_state)
            if settings.fork_from == "owner-branch":
                parent_id = ref.owner_branch_id
            project = ref
        else:
            project = NeonProject(
                self,
                "db",
                name=stage.resource_name(settings.app, "db"),
                region_id=settings.neon_region,
                pg_version=settings.neon_pg_version,
            )
        branch = NeonBranch(
            self,
            "branch",
            project=project,
            name=stage.resource_name(settings.app, "branch"),
            parent_id=parent_id,
        )
        migrations = BranchMigrations(
            self,
            "migrations",
            host=branch.host,
            database=branch.database_name,
            role=branch.role_name,
            password=branch.password,
            directory=settings.migrations_path,
        )
        hyperdrive = Hyperdrive(
            self,
            "hyperdrive",
            account_id=settings.cloudflare_account_id,
            name=stage.resource_name(settings.app, "hyperdrive"),
            origin=PostgresOrigin(
                host=branch.host,
                database=branch.database_name,
                user=branch.role_name,
                password=branch.password,
            ),
            depends_on=[migrations.resource],
        )
        worker = Worker(
            self,
            "api",
            account_id=settings.cloudflare_account_id,
            script_name=stage.resource_name(settings.app, "api"),
            source=settings.worker_path / "dist" / "index.js",
            hyperdrive=hyperdrive,
            compatibility_date=settings.compatibility_date,
        )
        TerraformOutput(self, "hyperdrive_id", value=hyperdrive.id, static_id=True)
        TerraformOutput(self, "worker_name", value=worker.name, static_id=True)
        TerraformOutput(self, "stage", value=stage.name, static_id=True)


def stages_to_synth(
    settings: Settings, stage_name: str | None, *, only: bool = False
) -> list[Stage]:
    """The requested stage plus the long-lived ones, each once, in a stable order."""
    requested = [stage_name] if stage_name else []
    names = requested if only else list(dict.fromkeys([*settings.long_lived, *requested]))
    return [
        Stage.parse(n, owner_stage=settings.owner_stage, referencing=settings.referencing)
        for n in names
    ]


def build_app(
    settings: Settings, stage_name: str | None, *, outdir: str | None = None, only: bool = False
) -> App:
    """The cdktf App for ``main.py`` and ``forkstage synth`` alike (identical output)."""
    app = App(outdir=outdir) if outdir else App()
    for stage in stages_to_synth(settings, stage_name, only=only):
        AppStack(app, stage=stage, settings=settings)
    return app
