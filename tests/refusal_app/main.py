"""The refusal tests' app: fixture_app's terraform_data stages, plus two deliberate mistakes.

pr-66 owns a `neon_project` (the local cloud's stand-in), which a referencing stage must never
delete; pr-5's branch has a destroy-time step that writes staging's state (bump_owner.py).
"""

import os
import sys
from pathlib import Path

from constructs import Construct

from cdk.core import App
from cdk.neon import NeonProject
from cdk.refs import StageRef
from cdk.settings import Settings, load_settings
from cdk.stack import ForkstageStack
from cdk.stage import Stage
from cdk.terraform_data import TerraformData

HERE = Path(__file__).resolve().parent


class RefusalStack(ForkstageStack):
    def __init__(self, scope: Construct, *, stage: Stage, settings: Settings) -> None:
        super().__init__(scope, stage=stage, settings=settings)
        if stage.is_referencing and stage.owner:
            ref = StageRef(
                self, "owner", stage=stage.owner, backend=settings.backend, guard=self.guard
            )
            project_id = ref.get_string("project_id")
        else:
            project = TerraformData(
                self, "project", input_={"app": settings.app, "stage": stage.name}
            )
            project_id = project.id
            self.output("project_id", project.id)
        if stage.name == "pr-66":
            NeonProject(self, "db")
        branch = TerraformData(
            self, "branch", input_={"project_id": project_id, "stage": stage.name}
        )
        if stage.name == "pr-5":
            step = {"when": "destroy", "command": f"python {HERE / 'bump_owner.py'}"}
            branch.add_override("provisioner", [{"local-exec": step}])
        self.output("branch_id", branch.id)


def main() -> int:
    settings = load_settings(HERE)
    name = os.environ.get("FORKSTAGE_STAGE") or os.environ.get("STAGE")
    names = [name] if name else list(settings.long_lived)
    app = App()
    for n in names:
        RefusalStack(app, stage=settings.parse_stage(n), settings=settings)
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
