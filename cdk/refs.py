"""Cross-stage references: read another stage's outputs from its workspace in the S3 backend.

CDKTF's automatic cross-stack references read the *current* workspace, which for pr-147 is
pr-147's own; a reference to staging must name workspace ``staging`` explicitly.
"""

from __future__ import annotations

from constructs import Construct

from cdk.backend import s3_config
from cdk.core import DataTerraformRemoteStateS3
from cdk.guard import WorkspaceGuard
from cdk.settings import BackendSettings
from cdk.stack import ForkstageStack


class StageRef(Construct):
    """Typed access to outputs another (long-lived) stage publishes.

    Example: a fixtures bucket or a DNS zone owned by ``staging`` and read by every PR stage.
    The read carries the workspace guard's precondition (``guard``; in a ``ForkstageStack``, its
    guard by default): Terraform reads remote state early in the plan, so a wrong workspace
    must fail there already. ``backend`` defaults to the ``ForkstageStack``'s too.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        stage: str,
        backend: BackendSettings | None = None,
        guard: WorkspaceGuard | None = None,
    ) -> None:
        stack = ForkstageStack.find(scope) if backend is None or guard is None else None
        if backend is None:
            if stack is None:
                raise TypeError(f"StageRef {id_!r}: pass backend= outside a ForkstageStack")
            backend = stack.settings.backend
        guard = guard or (stack.guard if stack else None)
        super().__init__(scope, id_)
        self.stage = stage
        self.remote_state = DataTerraformRemoteStateS3(
            self, "state", workspace=stage, **s3_config(backend)
        )
        if guard is not None:
            guard.protect(self.remote_state)

    def get_string(self, output: str) -> str:
        """A token for the referenced stage's output ``output``."""
        return self.remote_state.get_string(output)
