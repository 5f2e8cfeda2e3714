"""Guards in the config itself, so plain cdktf and terraform keep them.

The workspace guard: `cdktf deploy stack-pr-147` picks the workspace from the environment; a
wrong one would write pr-147's resources into another stage's state. A precondition fails the
plan before anything is written, with a message naming the right workspace.

The state guard: the stateful resources (Neon project, branch) of the owner stage and of
protected stages get ``lifecycle.prevent_destroy``, so a plan that would destroy or replace them
fails before anything is applied. forkstage lifts it only for its own checked plans (an override
file beside the config for that one run; see forkstage.guards), never in the synthesized JSON.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from constructs import Construct

from cdk.core import TerraformElement
from cdk.terraform_data import TerraformData

if TYPE_CHECKING:
    from cdk.settings import Settings
    from cdk.stage import Stage


def guards_state(stage: Stage, settings: Settings) -> bool:
    """Whether the stage's stateful resources are kept from destroy and replace: the owner
    stage (every referencing stage forks it) and protected stages."""
    return stage.name == settings.owner_stage or stage.name in settings.protected


def keep(element: TerraformElement) -> None:
    """``lifecycle.prevent_destroy``: no plan may destroy or replace ``element``."""
    element.add_override("lifecycle.prevent_destroy", True)


def workspace_condition(workspace: str) -> dict[str, str]:
    """A Terraform precondition that holds only in ``workspace``."""
    return {
        "condition": f'${{terraform.workspace == "{workspace}"}}',
        "error_message": (
            f"This config belongs to stage {workspace!r}: select workspace {workspace!r} "
            f"(forkstage deploy --stage {workspace}, or terraform workspace select {workspace})."
        ),
    }


class WorkspaceGuard(Construct):
    """A ``terraform_data`` whose precondition pins the stack to one workspace."""

    def __init__(self, scope: Construct, id_: str, *, workspace: str) -> None:
        super().__init__(scope, id_)
        self.workspace = workspace
        self.resource = TerraformData(self, "guard", input_={"workspace": workspace})
        self.resource.override_logical_id("workspace_guard")
        self.protect(self.resource)

    def protect(self, element: TerraformElement) -> None:
        """Give another resource or data source the same precondition.

        Used on cross-stage reads, which Terraform evaluates early in the plan.
        """
        condition: Any = [workspace_condition(self.workspace)]
        element.add_override("lifecycle.precondition", condition)
