"""The workspace guard: a stage's config refuses to plan in any other stage's workspace.

`cdktf deploy stack-pr-147` picks the workspace from the environment; a wrong one would write
pr-147's resources into another stage's state. A precondition fails the plan before anything is
written, with a message naming the right workspace.
"""

from __future__ import annotations

from typing import Any

from constructs import Construct

from cdk.core import TerraformElement
from cdk.terraform_data import TerraformData


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
