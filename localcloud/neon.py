"""A small Neon control plane on real PostgreSQL, for the local stand-in provider and tools.

Neon's model, kept where it matters to forkstage: a project owns branches; a branch is an
isolated copy of its parent at creation time (databases, roles, passwords, rows, migration
history) that diverges afterwards; an endpoint is the compute that serves one branch. Here every
branch has its own PostgreSQL data directory, so database and role names are the parent's, as on
Neon; an endpoint is that directory's server running on a loopback port. A branch without an
endpoint keeps its data but runs nothing (``neon_compute``).

Endpoint hosts look like Neon's (``ep-cool-river-12345678.neon.localhost``) but carry no port,
as on Neon where Hyperdrive and clients use 5432. ``resolve_host`` maps such a host to the
``127.0.0.1:PORT`` its server listens on; local tools (Hyperdrive/Miniflare) go through it. A
project's ``connection_uri`` is directly usable (``postgresql://u:p@127.0.0.1:PORT/db``).

The stand-in provider runs in processes Terraform starts and stops, so all state is on disk under
``$FORKSTAGE_HOME/local/neon/`` (``neon_state``), changed only under an exclusive file lock: each
method here is one atomic call. Passwords never appear in messages, logs or command lines (roles
get a SCRAM verifier computed client-side, ``neon_sql``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cdk.connection import postgres_url
from localcloud.neon_compute import Computes, dir_size
from localcloud.neon_ids import new_password, now, word_id
from localcloud.neon_plan import DEFAULT_RETENTION, check_retention, retention_cap
from localcloud.neon_sql import SUPERUSER
from localcloud.neon_state import (
    Branch,
    Conflict,
    Endpoint,
    NeonError,
    NotFound,
    PasswordNotStored,
    Project,
    state_store,
)
from localcloud.net import LOOPBACK

__all__ = [
    "DEFAULT_DATABASE",
    "DEFAULT_REGION",
    "DEFAULT_RETENTION",
    "DEFAULT_ROLE",
    "HOST_SUFFIX",
    "PROXY_HOST",
    "SUPERUSER",
    "Branch",
    "Conflict",
    "ControlPlane",
    "Endpoint",
    "NeonError",
    "NotFound",
    "PasswordNotStored",
    "Project",
    "new_password",
]

HOST_SUFFIX = ".neon.localhost"
PROXY_HOST = "neon.localhost"
DEFAULT_DATABASE = "neondb"
DEFAULT_ROLE = "neondb_owner"
DEFAULT_REGION = "local"


class ControlPlane:
    """Projects, branches and endpoints under ``<home>/local/neon``; every call is atomic."""

    def __init__(self, home: Path, *, fsync: bool = False) -> None:
        self.root = Path(home) / "local" / "neon"
        self.fsync = fsync
        self.store = state_store(self.root, fsync=fsync)
        self.computes = Computes(self.root, fsync=fsync)
        self.branches_root = self.computes.root

    @property
    def state_file(self) -> Path:
        return self.store.path

    def branch_dir(self, branch_id: str) -> Path:
        return self.computes.branch_dir(branch_id)

    def data_dir(self, branch_id: str) -> Path:
        return self.computes.data_dir(branch_id)

    # -- projects ------------------------------------------------------------------------------
    def create_project(
        self,
        *,
        name: str | None = None,
        region_id: str | None = None,
        pg_version: int | None = None,
        branch_name: str | None = None,
        database_name: str | None = None,
        role_name: str | None = None,
        store_password: bool = True,
        org_id: str | None = None,
        history_retention_seconds: int | None = None,
    ) -> Project:
        """A project with its default branch, database, owner role and running endpoint."""
        # Omitted, the API picks what the plan allows; the provider never omits it (86400).
        retention = (
            min(DEFAULT_RETENTION, retention_cap())
            if history_retention_seconds is None
            else history_retention_seconds
        )
        check_retention(retention)
        with self.store.change() as state:
            project_id = word_id()
            branch_id = word_id("br-")
            endpoint_id = word_id("ep-")
            database = database_name or DEFAULT_DATABASE
            role = role_name or DEFAULT_ROLE
            password = new_password()
            project = Project(
                id=project_id,
                name=name or project_id,
                region_id=region_id or DEFAULT_REGION,
                pg_version=0,
                default_branch_id=branch_id,
                default_endpoint_id=endpoint_id,
                database_name=database,
                role_name=role,
                store_password=store_password,
                admin_password=new_password(),
                created_at=now(),
                org_id=org_id or "",
                history_retention_seconds=retention,
            )
            server_version = self.computes.init_primary(
                state, project, branch_id, role=role, password=password
            )
            port = self.computes.free_port(state)
            project.pg_version = pg_version or server_version
            state.projects[project_id] = project
            state.branches[branch_id] = Branch(
                id=branch_id,
                project_id=project_id,
                name=branch_name or "main",
                parent_id=None,
                primary=True,
                created_at=project.created_at,
                roles={role: password},
                databases={database: role},
                logical_size=dir_size(self.data_dir(branch_id)),
            )
            state.endpoints[endpoint_id] = Endpoint(
                id=endpoint_id,
                project_id=project_id,
                branch_id=branch_id,
                type="read_write",
                port=port,
                host=endpoint_id + HOST_SUFFIX,
                pooler_host=endpoint_id + "-pooler" + HOST_SUFFIX,
                created_at=project.created_at,
            )
            self.computes.start(state, state.endpoints[endpoint_id])
            return project

    def get_project(self, project_id: str) -> Project:
        return self.store.load().project(project_id)

    def rename_project(self, project_id: str, name: str) -> Project:
        with self.store.change() as state:
            project = state.project(project_id)
            project.name = name
            return project

    def set_retention(self, project_id: str, seconds: int) -> None:
        check_retention(seconds)
        with self.store.change() as state:
            state.project(project_id).history_retention_seconds = seconds

    def set_store_password(self, project_id: str, store: bool) -> None:
        with self.store.change() as state:
            state.project(project_id).store_password = store

    def delete_project(self, project_id: str) -> None:
        """Everything of the project: endpoints stopped, every branch's data removed."""
        with self.store.change() as state:
            state.project(project_id)
            for endpoint in [e for e in state.endpoints.values() if e.project_id == project_id]:
                self.computes.release(endpoint.id)
                self.computes.stop_branch(state, endpoint.branch_id)
                del state.endpoints[endpoint.id]
            for branch in [b for b in state.branches.values() if b.project_id == project_id]:
                self.computes.stop_branch(state, branch.id)
                self.computes.remove_branch_data(branch.id)
                del state.branches[branch.id]
            del state.projects[project_id]

    # -- branches ------------------------------------------------------------------------------
    def create_branch(
        self, project_id: str, *, name: str | None = None, parent_id: str | None = None
    ) -> Branch:
        """An isolated copy of the parent (default: the project's default branch) as of now."""
        with self.store.change() as state:
            project = state.project(project_id)
            parent = state.branch(project_id, parent_id or project.default_branch_id)
            branch_id = word_id("br-")
            target = self.computes.fork(state, parent, branch_id)
            branch = Branch(
                id=branch_id,
                project_id=project_id,
                name=name or branch_id,
                parent_id=parent.id,
                primary=False,
                created_at=now(),
                roles=dict(parent.roles),
                databases=dict(parent.databases),
                logical_size=dir_size(target),
            )
            state.branches[branch_id] = branch
            return branch

    def get_branch(self, project_id: str, branch_id: str) -> Branch:
        return self.store.load().branch(project_id, branch_id)

    def update_branch(
        self, project_id: str, branch_id: str, *, name: str | None = None, protected: bool = False
    ) -> Branch:
        with self.store.change() as state:
            branch = state.branch(project_id, branch_id)
            branch.name = name or branch.name
            branch.protected = protected
            return branch

    def delete_branch(self, project_id: str, branch_id: str) -> None:
        """Its endpoints stopped and its data removed; the parent and siblings are untouched."""
        with self.store.change() as state:
            branch = state.branch(project_id, branch_id)
            if branch.primary:
                raise Conflict(f"branch {branch_id} is the project's default branch")
            children = [b.id for b in state.branches.values() if b.parent_id == branch_id]
            if children:
                raise Conflict(f"branch {branch_id} has child branches: {', '.join(children)}")
            for endpoint in [e for e in state.endpoints.values() if e.branch_id == branch_id]:
                self.computes.release(endpoint.id)
                del state.endpoints[endpoint.id]
            self.computes.stop_branch(state, branch_id)
            self.computes.remove_branch_data(branch_id)
            del state.branches[branch_id]

    def role_password(self, project_id: str, branch_id: str, role: str) -> str:
        state = self.store.load()
        project = state.project(project_id)
        branch = state.branch(project_id, branch_id)
        if not project.store_password:
            raise PasswordNotStored(
                f'project {project_id} does not store role passwords (store_password = "no")'
            )
        if role not in branch.roles:
            raise NotFound(f"role {role} not found on branch {branch_id}")
        return branch.roles[role]

    # -- endpoints -----------------------------------------------------------------------------
    def create_endpoint(
        self, project_id: str, branch_id: str, *, type: str = "read_write"
    ) -> Endpoint:
        """Start the branch's server on a free loopback port."""
        with self.store.change() as state:
            project = state.project(project_id)
            state.branch(project_id, branch_id)
            if type != "read_write":
                raise NeonError(f"endpoint type {type!r} is not emulated locally: use read_write")
            if state.branch_endpoint(branch_id) is not None:
                raise Conflict(f"branch {branch_id} already has a read_write endpoint")
            endpoint_id = word_id("ep-")
            endpoint = Endpoint(
                id=endpoint_id,
                project_id=project.id,
                branch_id=branch_id,
                type=type,
                port=self.computes.free_port(state),
                host=endpoint_id + HOST_SUFFIX,
                pooler_host=endpoint_id + "-pooler" + HOST_SUFFIX,
                created_at=now(),
            )
            self.computes.start(state, endpoint)
            state.endpoints[endpoint_id] = endpoint
            return endpoint

    def get_endpoint(self, project_id: str, endpoint_id: str) -> Endpoint:
        return self.store.load().endpoint(project_id, endpoint_id)

    def update_endpoint(self, project_id: str, endpoint_id: str, settings: dict[str, Any]) -> None:
        with self.store.change() as state:
            state.endpoint(project_id, endpoint_id).settings = settings

    def move_endpoint(self, project_id: str, endpoint_id: str, branch_id: str) -> Endpoint:
        """Serve another branch (the API's PATCH with ``branch_id``); it must have no endpoint."""
        with self.store.change() as state:
            endpoint = state.endpoint(project_id, endpoint_id)
            if endpoint.branch_id == branch_id:
                return endpoint
            state.branch(project_id, branch_id)
            if state.branch_endpoint(branch_id) is not None:
                raise Conflict(f"branch {branch_id} already has a read_write endpoint")
            self.computes.stop_branch(state, endpoint.branch_id)
            endpoint.branch_id = branch_id
            self.computes.start(state, endpoint)
            return endpoint

    def wake(self, endpoint_id: str) -> Endpoint:
        """Serve an endpoint's address again (after a reboot, say); its server starts on the
        next connection, as a suspended Neon compute does."""
        with self.store.change() as state:
            if endpoint_id not in state.endpoints:
                raise NotFound(f"endpoint {endpoint_id} not found")
            endpoint = state.endpoints[endpoint_id]
            self.computes.start(state, endpoint, resume=False)
            return endpoint

    def delete_endpoint(self, project_id: str, endpoint_id: str) -> None:
        """Stop the branch's server; its data stays with the branch."""
        with self.store.change() as state:
            endpoint = state.endpoint(project_id, endpoint_id)
            if state.projects[project_id].default_endpoint_id == endpoint_id:
                raise Conflict(f"endpoint {endpoint_id} is the project's default endpoint")
            self.computes.release(endpoint_id)
            self.computes.stop_branch(state, endpoint.branch_id)
            del state.endpoints[endpoint_id]

    def resolve_host(self, host: str) -> tuple[str, int]:
        """``(127.0.0.1, port)`` that serves an endpoint host (direct or pooler)."""
        state = self.store.load()
        for endpoint in state.endpoints.values():
            if host in (endpoint.host, endpoint.pooler_host):
                return LOOPBACK, endpoint.port
        raise NotFound(f"no local endpoint has host {host}")

    def branch_url(
        self,
        project_id: str,
        branch_id: str,
        *,
        database: str | None = None,
        role: str | None = None,
    ) -> str:
        """A libpq URL to the branch's endpoint, as the project's owner role by default."""
        state = self.store.load()
        project = state.project(project_id)
        branch = state.branch(project_id, branch_id)
        endpoint = state.branch_endpoint(branch_id)
        if endpoint is None:
            raise NotFound(f"branch {branch_id} has no endpoint")
        user = role or project.role_name
        password = branch.roles.get(user)
        if password is None:
            raise NotFound(f"role {user} not found on branch {branch_id}")
        return postgres_url(
            host=LOOPBACK,
            port=endpoint.port,
            database=database or project.database_name,
            user=user,
            password=password,
        )

    # -- housekeeping --------------------------------------------------------------------------
    def endpoints(self) -> list[Endpoint]:
        return list(self.store.load().endpoints.values())

    def start_all(self) -> None:
        with self.store.change() as state:
            for endpoint in state.endpoints.values():
                self.computes.start(state, endpoint)

    def stop_all(self) -> None:
        """Stop every server under this home (before a reboot, at test teardown), including
        one a killed process started but never recorded."""
        if not self.root.is_dir():
            return
        # Nothing recorded changes: endpoints wake on their next read, or with start_all().
        with self.store.read():
            self.computes.stop_all()
