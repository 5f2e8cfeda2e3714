"""Fixture cdktf app: an owner stage's "project" and every stage's "branch" as terraform_data."""

import os
import sys
from pathlib import Path

from constructs import Construct

from cdk.backend import add_s3_backend
from cdk.core import App, TerraformOutput, TerraformStack
from cdk.guard import WorkspaceGuard
from cdk.refs import StageRef
from cdk.settings import Settings, load_settings
from cdk.stage import Stage
from cdk.terraform_data import TerraformData


class FixtureStack(TerraformStack):
    def __init__(self, scope: Construct, *, stage: Stage, settings: Settings) -> None:
        super().__init__(scope, stage.stack_id)
        add_s3_backend(self, settings.backend)
        guard = WorkspaceGuard(self, "workspace", workspace=stage.workspace)
        if stage.is_referencing and stage.owner:
            ref = StageRef(self, "owner", stage=stage.owner, backend=settings.backend, guard=guard)
            project_id = ref.get_string("project_id")
        else:
            project = TerraformData(
                self, "project", input_={"app": settings.app, "stage": stage.name}
            )
            project_id = project.id
            TerraformOutput(self, "project_id", value=project.id, static_id=True)
            TerraformOutput(
                self, "admin_password", value="fixture-secret", sensitive=True, static_id=True
            )
        branch = TerraformData(
            self, "branch", input_={"project_id": project_id, "stage": stage.name}
        )
        TerraformOutput(self, "branch_id", value=branch.id, static_id=True)
        TerraformOutput(self, "parent_project_id", value=project_id, static_id=True)


def main() -> int:
    settings = load_settings(Path(__file__).resolve().parent)
    name = os.environ.get("FORKSTAGE_STAGE") or os.environ.get("STAGE")
    names = [name] if name else list(settings.long_lived)
    app = App()
    for n in names:
        FixtureStack(app, stage=settings.parse_stage(n), settings=settings)
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
