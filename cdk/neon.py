"""Neon: the owned project, the reference to another stage's project, and a stage's branch.

``NeonProject`` (owner stages) and ``NeonProjectRef`` (referencing stages) expose the same
attributes, so a branch is wired to either without knowing which it got: a PR stage differs only
in the project line. The output names the owner writes and the reference reads come from one
table, so they cannot drift apart. Names, region and version default to the stack's settings.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal, Protocol

from constructs import Construct

from cdk.core import TerraformOutput, TerraformResource
from cdk.guard import guards_state, keep
from cdk.migrations import BranchMigrations
from cdk.postgres import PostgresOrigin, pooler_host, url_expression
from cdk.providers.generated import neon
from cdk.refs import StageRef
from cdk.stack import ForkstageStack

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
# Sensitive: a connection string for tests against the stage's branch (as Neon's actions give).
URL_OUTPUTS = ("database_url", "database_url_pooled")
POSTGRES_PORT = 5432


def _stack(scope: Construct) -> ForkstageStack:
    stack = ForkstageStack.of(scope)
    stack.use_provider("neon", neon.NeonProvider)
    return stack


class ProjectLike(Protocol):
    """What a branch needs from a project, owned or referenced."""

    @property
    def id(self) -> str: ...

    @property
    def fork_parent_id(self) -> str:
        """The branch a new stage branch forks from."""
        ...

    @property
    def database_name(self) -> str: ...

    @property
    def database_user(self) -> str: ...


class NeonProject(Construct):
    """A Neon project this stage owns, creates and (eventually) destroys; it publishes itself."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name: str | None = None,
        region_id: str | None = None,
        pg_version: int | None = None,
        database_name: str = "app",
        role_name: str = "app_owner",
    ) -> None:
        stack = _stack(scope)
        super().__init__(scope, id_)
        settings = stack.settings
        # store_password: branches read their role password through a data source later.
        # history_retention_seconds: unset, the provider asks for 86400, which the Free plan
        # refuses (kislerdm/neon provider/resource_project.go); org_id only when configured.
        self.resource = neon.Project(
            self,
            "project",
            name=name or stack.resource_name(id_),
            region_id=region_id or settings.neon_region,
            pg_version=pg_version or settings.neon_pg_version,
            org_id=settings.neon_org_id or None,
            history_retention_seconds=settings.neon_history_retention_seconds,
            store_password="yes",
            branch={"name": "main", "database_name": database_name, "role_name": role_name},
        )
        if guards_state(stack.stage, settings):
            keep(self.resource)  # every referencing stage's branch lives in this project
        for attr, output in PROJECT_OUTPUTS.items():
            TerraformOutput(self, output, value=getattr(self, attr), static_id=True)

    @cached_property
    def id(self) -> str:
        return self.resource.id

    @cached_property
    def default_branch_id(self) -> str:
        return self.resource.default_branch_id

    @property
    def fork_parent_id(self) -> str:
        return self.default_branch_id

    @cached_property
    def database_name(self) -> str:
        return self.resource.database_name

    @cached_property
    def database_user(self) -> str:
        return self.resource.database_user


class NeonProjectRef(Construct):
    """The project stage ``stage`` owns, read from its state: no project API call.

    The read is guarded like the rest of the stack (it fails the plan in a wrong workspace).
    ``fork_from`` (default: ``neon.fork_from`` in the settings) picks what a branch forks from:
    "owner-branch" is the owner stage's own branch (its rows and migration history), "default"
    the project's default branch.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        stage: str,
        fork_from: Literal["default", "owner-branch"] | None = None,
    ) -> None:
        stack = _stack(scope)
        super().__init__(scope, id_)
        self.owner_stage = stage
        self.fork_from = fork_from or stack.settings.fork_from
        self.ref = StageRef(
            self,
            "owner",
            stage=stage,
            backend=stack.settings.backend,
            guard=stack.guard,
        )

    @cached_property
    def id(self) -> str:
        return self.ref.get_string(PROJECT_OUTPUTS["id"])

    @cached_property
    def default_branch_id(self) -> str:
        return self.ref.get_string(PROJECT_OUTPUTS["default_branch_id"])

    @cached_property
    def owner_branch_id(self) -> str:
        """The owner stage's own branch (what ``fork_from = "owner-branch"`` forks)."""
        return self.ref.get_string(BRANCH_OUTPUTS["id"])

    @property
    def fork_parent_id(self) -> str:
        return self.owner_branch_id if self.fork_from == "owner-branch" else self.default_branch_id

    @cached_property
    def database_name(self) -> str:
        return self.ref.get_string(PROJECT_OUTPUTS["database_name"])

    @cached_property
    def database_user(self) -> str:
        return self.ref.get_string(PROJECT_OUTPUTS["database_user"])


class NeonBranch(Construct):
    """A stage's own copy-on-write branch: endpoint, role password and, given a folder, migrations.

    ``origin`` is what a client such as Hyperdrive needs, including the migrations step to wait
    for. The branch publishes its id and host (a referencing stage may fork from it).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        project: ProjectLike,
        name: str | None = None,
        parent_id: str | None = None,
        migrations_dir: Path | None = None,
    ) -> None:
        stack = _stack(scope)
        super().__init__(scope, id_)
        self.project = project
        branch_name = name or stack.resource_name(id_)
        self.branch = neon.Branch(
            self,
            "branch",
            project_id=project.id,
            name=branch_name,
            parent_id=parent_id if parent_id is not None else project.fork_parent_id,
        )
        if guards_state(stack.stage, stack.settings):
            keep(self.branch)  # referencing stages fork it; its rows are the stage's data
        compute = stack.settings.neon_compute.for_stage(stack.stage.is_referencing)
        self.endpoint = neon.Endpoint(
            self,
            "endpoint",
            project_id=project.id,
            branch_id=self.id,
            type="read_write",
            autoscaling_limit_min_cu=compute.min_cu,
            autoscaling_limit_max_cu=compute.max_cu,
            suspend_timeout_seconds=compute.suspend_timeout_seconds,
        )
        if isinstance(project, NeonProject):
            # a new project (a ForceNew attribute changed) holds none of the old one's
            # branches or endpoints: they are made again in it, not updated into it
            follow(self.branch, project.resource)
            follow(self.endpoint, self.branch)
        self.role_password = neon.DataNeonBranchRolePassword(
            self,
            "role_password",
            project_id=project.id,
            branch_id=self.id,
            role_name=self.role_name,
        )
        guard_password(self.role_password, branch_name)
        for attr, output in BRANCH_OUTPUTS.items():
            TerraformOutput(self, output, value=getattr(self, attr), static_id=True)
        for output, url in zip(
            URL_OUTPUTS, (self.database_url, self.database_url_pooled), strict=True
        ):
            TerraformOutput(self, output, value=url, sensitive=True, static_id=True)
        self.migrations: BranchMigrations | None = None
        if migrations_dir is not None:
            # It used to be the stack's "migrations"; the first branch keeps that address.
            self.migrations = BranchMigrations(
                self,
                "migrations",
                host=self.host,
                port=POSTGRES_PORT,
                database=self.database_name,
                role=self.role_name,
                password=self.password,
                directory=migrations_dir,
                former_scope=stack.former_scope("migrations"),
            )

    @cached_property
    def id(self) -> str:
        return self.branch.id

    @cached_property
    def host(self) -> str:
        """The endpoint's direct host (Hyperdrive must not go through Neon's pooler)."""
        return self.endpoint.host

    @cached_property
    def password(self) -> str:
        return self.role_password.password

    @cached_property
    def database_url(self) -> str:
        """The branch's direct connection string, in Neon's shape (sensitive)."""
        return url_expression(
            host=self.host, database=self.database_name, role=self.role_name, password=self.password
        )

    @cached_property
    def database_url_pooled(self) -> str:
        """The same through Neon's pooler (first host label + ``-pooler``)."""
        return url_expression(
            host=pooler_host(self.host),
            database=self.database_name,
            role=self.role_name,
            password=self.password,
        )

    @property
    def database_name(self) -> str:
        return self.project.database_name

    @property
    def role_name(self) -> str:
        return self.project.database_user

    @property
    def origin(self) -> PostgresOrigin:
        """Host, port, database, owner role and password; ready once migrations have run."""
        return PostgresOrigin(
            host=self.host,
            port=POSTGRES_PORT,
            database=self.database_name,
            user=self.role_name,
            password=self.password,
            depends_on=(self.migrations.resource,) if self.migrations else (),
        )


def follow(element: TerraformResource, leader: TerraformResource) -> None:
    """``element`` is replaced whenever ``leader`` is (``replace_triggered_by`` its id)."""
    reference = f"{leader.terraform_resource_type}.{leader.friendly_unique_id}.id"
    element.add_override("lifecycle.replace_triggered_by", [reference])


def password_postcondition(branch_name: str) -> dict[str, str]:
    """The check on ``neon_branch_role_password``: an empty password fails, saying what to check.

    The data source drops API errors and returns "" (kislerdm/neon
    provider/data_source_branch_role_password.go), which would surface much later as a Hyperdrive
    or migration authentication error.
    """
    message = (
        f"Neon returned an empty password for role ${{self.role_name}} on branch {branch_name} "
        "(${self.branch_id}, project ${self.project_id}): check that NEON_API_KEY can read the "
        'project, that the project stores passwords (store_password = "yes") and that the '
        "role exists on the branch."
    )
    return {"condition": '${self.password != ""}', "error_message": message}


def guard_password(source: neon.DataNeonBranchRolePassword, branch_name: str) -> None:
    """Fail at the data source, not later, when the provider hands back an empty password."""
    source.add_override("lifecycle.postcondition", [password_postcondition(branch_name)])
