"""What the local Neon control plane records: projects, branches and endpoints, and where.

Everything is in ``<root>/state.json`` (mode 0600: it holds passwords), read and changed under a
file lock (``localcloud.store``), since the stand-in provider runs in processes Terraform starts
and stops. The JSON form is ``{"version": 1, "projects": {...}, "branches": {...},
"endpoints": {...}}`` with each record's fields as keys; it must stay readable by older and newer
code sharing one ``$FORKSTAGE_HOME``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from localcloud.store import JsonStore


class NeonError(RuntimeError):
    """An API error of the local control plane (message safe to show: no secrets)."""

    status = 400


class NotFound(NeonError):
    status = 404


class Conflict(NeonError):
    status = 409


class PasswordNotStored(NeonError):
    status = 412


@dataclass
class Project:
    id: str
    name: str
    region_id: str
    pg_version: int
    default_branch_id: str
    default_endpoint_id: str
    database_name: str
    role_name: str
    store_password: bool
    admin_password: str = field(repr=False)  # the superuser's; never handed out
    created_at: str = ""
    org_id: str = ""
    history_retention_seconds: int = 86400


@dataclass
class Branch:
    id: str
    project_id: str
    name: str
    parent_id: str | None
    primary: bool
    created_at: str
    roles: dict[str, str] = field(default_factory=dict, repr=False)  # role -> password
    databases: dict[str, str] = field(default_factory=dict)  # database -> owner role
    logical_size: int = 0
    protected: bool = False


@dataclass
class Endpoint:
    id: str
    project_id: str
    branch_id: str
    type: str
    port: int
    host: str
    pooler_host: str
    created_at: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class NeonState:
    projects: dict[str, Project] = field(default_factory=dict)
    branches: dict[str, Branch] = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> NeonState:
        return cls(
            projects={k: Project(**v) for k, v in raw.get("projects", {}).items()},
            branches={k: Branch(**v) for k, v in raw.get("branches", {}).items()},
            endpoints={k: Endpoint(**v) for k, v in raw.get("endpoints", {}).items()},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "projects": {k: asdict(v) for k, v in self.projects.items()},
            "branches": {k: asdict(v) for k, v in self.branches.items()},
            "endpoints": {k: asdict(v) for k, v in self.endpoints.items()},
        }

    # -- lookups that answer 404 as the API does -------------------------------------------------
    def project(self, project_id: str) -> Project:
        if project_id not in self.projects:
            raise NotFound(f"project {project_id} not found")
        return self.projects[project_id]

    def branch(self, project_id: str, branch_id: str) -> Branch:
        self.project(project_id)
        branch = self.branches.get(branch_id)
        if branch is None or branch.project_id != project_id:
            raise NotFound(f"branch {branch_id} not found in project {project_id}")
        return branch

    def endpoint(self, project_id: str, endpoint_id: str) -> Endpoint:
        self.project(project_id)
        endpoint = self.endpoints.get(endpoint_id)
        if endpoint is None or endpoint.project_id != project_id:
            raise NotFound(f"endpoint {endpoint_id} not found in project {project_id}")
        return endpoint

    def branch_endpoint(self, branch_id: str) -> Endpoint | None:
        return next((e for e in self.endpoints.values() if e.branch_id == branch_id), None)


def state_store(root: Path, *, fsync: bool = False) -> JsonStore[NeonState]:
    """``<root>/state.json``; ``root`` stays mode 0711 (PostgreSQL, possibly another OS user,
    must traverse it to its data directories)."""
    return JsonStore(
        root / "state.json",
        decode=NeonState.from_json,
        encode=NeonState.to_json,
        folder_mode=0o711,
        fsync=fsync,
    )
