"""Cross-stage references: read another stage's outputs from its workspace in the S3 backend.

CDKTF's automatic cross-stack references read the *current* workspace, which for pr-147 is
pr-147's own; a reference to staging must name workspace ``staging`` explicitly.
"""

from __future__ import annotations

from cdktf import DataTerraformRemoteStateS3
from constructs import Construct

from cdk.backend import s3_config
from cdk.settings import BackendSettings


class StageRef(Construct):
    """Typed access to outputs another (long-lived) stage publishes.

    Example: a fixtures bucket or a DNS zone owned by ``staging`` and read by every PR stage.
    """

    def __init__(self, scope: Construct, id_: str, *, stage: str, backend: BackendSettings) -> None:
        super().__init__(scope, id_)
        self.stage = stage
        self.remote_state = DataTerraformRemoteStateS3(
            self, "state", workspace=stage, **s3_config(backend)
        )

    def get_string(self, output: str) -> str:
        """A token for the referenced stage's output ``output``."""
        return self.remote_state.get_string(output)

    def get_number(self, output: str) -> float:
        return self.remote_state.get_number(output)
