"""Neon: the owned project, the reference to another stage's project, and a stage's branch.

``NeonProject`` (owner stages) and ``NeonProjectRef`` (referencing stages) expose the same
attributes, so the stack wires a branch to either without knowing which it got. The output names
the owner writes and the reference reads come from one table, so they cannot drift apart.
"""

from __future__ import annotations

from typing import Protocol

from cdktf import TerraformOutput
from constructs import Construct

from cdk.providers.generated import neon
from cdk.refs import StageRef
from cdk.settings import BackendSettings

# attribute -> output name; written by NeonProject, read by NeonProjectRef.
PROJECT_OUTPUTS: dict[str, str] = {
    "id": "neon_project_id",
    "default_branch_id": "neon_default_branch_id",
    "database_name": "neon_database_name",
    "database_user": "neon_database_user",
}
# Every stage publishes its own branch; referencing stages may fork from the owner's.
BRANCH_OUTPUTS: dict[str, str] = {
    "id": "neon_branch_id",
    "host": "neon_endpoint_host",
}


class ProjectLike(Protocol):
    """What a branch needs from a project, owned or referenced."""

    @property
    def id(self) -> str: ...

    @property
    def default_branch_id(self) -> str: ...

    @property
    def database_name(self) -> str: ...

    @property
    def database_user(self) -> str: ...


class NeonProject(Construct):
    """A Neon project this stage owns, creates and (eventually) destroys."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name: str,
        region_id: str,
        pg_version: int,
        database_name: str = "app",
        role_name: str = "app_owner",
    ) -> None:
        super().__init__(scope, id_)
        # store_password: branches read their role password through a data source later.
        self.resource = neon.Project(
            self,
            "project",
            name=name,
            region_id=region_id,
            pg_version=pg_version,
            store_password="yes",
            branch={"name": "main", "database_name": database_name, "role_name": role_name},
        )
        for attr, output in PROJECT_OUTPUTS.items():
            TerraformOutput(self, output, value=getattr(self, attr), static_id=True)

    @property
    def id(self) -> str:
        return self.resource.id

    @property
    def default_branch_id(self) -> str:
        return self.resource.default_branch_id

    @property
    def database_name(self) -> str:
        return self.resource.database_name

    @property
    def database_user(self) -> str:
        return self.resource.database_user


class NeonProjectRef(Construct):
    """A project owned by another stage, read from that stage's state: no project API call."""

    def __init__(
        self, scope: Construct, id_: str, *, owner_stage: str, backend: BackendSettings
    ) -> None:
        super().__init__(scope, id_)
        self.owner_stage = owner_stage
        self.ref = StageRef(self, "owner", stage=owner_stage, backend=backend)

    @property
    def id(self) -> str:
        return self.ref.get_string(PROJECT_OUTPUTS["id"])

    @property
    def default_branch_id(self) -> str:
        return self.ref.get_string(PROJECT_OUTPUTS["default_branch_id"])

    @property
    def database_name(self) -> str:
        return self.ref.get_string(PROJECT_OUTPUTS["database_name"])

    @property
    def database_user(self) -> str:
        return self.ref.get_string(PROJECT_OUTPUTS["database_user"])

    @property
    def owner_branch_id(self) -> str:
        """The owner stage's own branch, for ``fork_from = "owner-branch"``."""
        return self.ref.get_string(BRANCH_OUTPUTS["id"])


class NeonBranch(Construct):
    """A stage's own copy-on-write branch with a read-write endpoint and its role password."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        project: ProjectLike,
        name: str,
        parent_id: str | None = None,
    ) -> None:
        super().__init__(scope, id_)
        self.project = project
        self.branch = neon.Branch(
            self,
            "branch",
            project_id=project.id,
            name=name,
            parent_id=parent_id if parent_id is not None else project.default_branch_id,
        )
        self.endpoint = neon.Endpoint(
            self, "endpoint", project_id=project.id, branch_id=self.branch.id, type="read_write"
        )
        self.role_password = neon.DataNeonBranchRolePassword(
            self,
            "role_password",
            project_id=project.id,
            branch_id=self.branch.id,
            role_name=project.database_user,
        )
        for attr, output in BRANCH_OUTPUTS.items():
            TerraformOutput(self, output, value=getattr(self, attr), static_id=True)

    @property
    def id(self) -> str:
        return self.branch.id

    @property
    def host(self) -> str:
        """The endpoint's direct host (Hyperdrive must not go through Neon's pooler)."""
        return self.endpoint.host

    @property
    def password(self) -> str:
        return self.role_password.password

    @property
    def database_name(self) -> str:
        return self.project.database_name

    @property
    def role_name(self) -> str:
        return self.project.database_user
