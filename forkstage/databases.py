"""How the wrapper reaches a project's databases: the migrator's ``Resolver`` for one project.

A stage's database is its branch endpoint, read from the stage's Terraform state: the state holds
what the endpoint and the role-password data source returned at the last apply, so
``forkstage migrate --stage pr-147`` reaches pr-147's own branch with no provider call.
``$FORKSTAGE_DATABASE_URL`` still wins, for databases forkstage did not create.

On the local target, endpoint hosts (``ep-...neon.localhost``) are served on loopback ports the
local control plane knows; ``connect_options`` routes them there. ``$FORKSTAGE_HOME`` (set when
Terraform's local-exec runs ``forkstage migrate``) says where that control plane lives.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdk.connection import postgres_url
from forkstage.context import Project
from forkstage.errors import BadInput

STAGE_URL_ENV = "FORKSTAGE_DATABASE_URL"


def _attributes(state: Mapping[str, Any], mode: str, type_: str) -> dict[str, Any] | None:
    for resource in state.get("resources", []):
        if resource.get("mode") == mode and resource.get("type") == type_:
            for instance in resource.get("instances", []):
                attrs = instance.get("attributes")
                if isinstance(attrs, dict):
                    return attrs
    return None


def _database_name(state: Mapping[str, Any]) -> str | None:
    """The owner stage's project says it; a referencing stage reads it from the owner's outputs."""
    project = _attributes(state, "managed", "neon_project")
    if project and project.get("database_name"):
        return str(project["database_name"])
    remote = _attributes(state, "data", "terraform_remote_state")
    if remote:
        outputs = remote.get("outputs") or {}
        value = (
            outputs.get("value") if isinstance(outputs, dict) and "value" in outputs else outputs
        )
        if isinstance(value, dict) and value.get("neon_database_name"):
            return str(value["neon_database_name"])
    return None


def url_from_state(state: Mapping[str, Any], *, sslmode: str = "require") -> str | None:
    """postgresql:// URL of the branch endpoint recorded in a stage's Terraform state, if any.

    Example: url_from_state(StateReader(backend, home).raw_state("pr-147") or {})
    """
    endpoint = _attributes(state, "managed", "neon_endpoint")
    password = _attributes(state, "data", "neon_branch_role_password")
    if not endpoint or not password or not endpoint.get("host"):
        return None
    database = _database_name(state)
    if not database:
        return None
    return postgres_url(
        host=str(endpoint["host"]),
        port=endpoint.get("port") or 5432,
        database=database,
        user=str(password.get("role_name", "")),
        password=str(password.get("password", "")),
        sslmode=sslmode,
    )


@dataclass
class ProjectDatabases:
    """The migrator's ``Resolver`` for a project: stage -> branch URL, local hosts -> loopback.

    Example: dbs = ProjectDatabases(); url = dbs.stage_url("pr-147")
             psycopg.connect(url, **dbs.connect_options(url))
    """

    # None outside a project: `migrate` given a database URL and --dir needs none (the
    # migrations step runs it in the stage's work folder under FORKSTAGE_HOME)
    found: Project | None = field(default_factory=Project.find)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    @property
    def project(self) -> Project:
        """The project around the working folder; BadInput (exit 2) outside one."""
        return self.found if self.found is not None else Project.load()

    def stage_url(self, stage: str) -> str:
        """``$FORKSTAGE_DATABASE_URL`` if set, else the branch endpoint in ``stage``'s state."""
        url = self.environ.get(STAGE_URL_ENV, "").strip()
        if url:
            return url
        from forkstage.embedded import ensure_running
        from forkstage.state import StateReader

        project = self.project
        project.parse_stage(stage)
        ensure_running(project.settings.backend, project.home)
        state = StateReader(project.settings.backend, project.home).raw_state(stage)
        found = url_from_state(state) if state else None
        if found is None:
            raise BadInput(
                f"stage {stage} has no deployed branch endpoint: deploy it first, or set "
                f"{STAGE_URL_ENV} / pass --database-url-env NAME"
            )
        return found

    def connect_options(self, url: str) -> dict[str, str]:
        """On the local target, route a local endpoint host to its loopback port; else {}."""
        if self.found is None:
            # the migrations step of a deploy: its environment names the local cloud's home
            home = self.environ.get("FORKSTAGE_HOME", "")
            if not home:
                return {}
            from localcloud.endpoints import connect_overrides

            return connect_overrides(url, Path(home))
        # `ci rehearse` runs the cloud target on stand-in providers: its endpoints are local too
        from forkstage.engine import REHEARSAL_PROVIDERS_HOOK

        rehearsal = bool(self.environ.get(REHEARSAL_PROVIDERS_HOOK))
        if self.found.settings.target != "local" and not rehearsal:
            return {}
        from localcloud.endpoints import connect_overrides

        return connect_overrides(url, self.project.home)
