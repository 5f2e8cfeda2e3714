"""Which database a stage's migrations go to: its branch endpoint, read from the stage's state.

The state holds what the endpoint and the role-password data source returned at the last apply,
so ``forkstage migrate --stage pr-147`` reaches pr-147's own branch with no provider call.
``$FORKSTAGE_DATABASE_URL`` still wins, for databases forkstage did not create.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from forkstage.migrator.errors import BadInput

STAGE_URL_ENV = "FORKSTAGE_DATABASE_URL"


def _attributes(state: dict[str, Any], mode: str, type_: str) -> dict[str, Any] | None:
    for resource in state.get("resources", []):
        if resource.get("mode") == mode and resource.get("type") == type_:
            for instance in resource.get("instances", []):
                attrs = instance.get("attributes")
                if isinstance(attrs, dict):
                    return attrs
    return None


def url_from_state(state: dict[str, Any], *, sslmode: str = "require") -> str | None:
    """postgresql:// URL of the branch endpoint recorded in a stage's Terraform state."""
    endpoint = _attributes(state, "managed", "neon_endpoint")
    password = _attributes(state, "data", "neon_branch_role_password")
    if not endpoint or not password or not endpoint.get("host"):
        return None
    database = None
    project = _attributes(state, "managed", "neon_project")
    if project:
        database = project.get("database_name")
    remote = _attributes(state, "data", "terraform_remote_state")
    if database is None and remote:
        outputs = remote.get("outputs") or {}
        value = (
            outputs.get("value") if isinstance(outputs, dict) and "value" in outputs else outputs
        )
        if isinstance(value, dict):
            database = value.get("neon_database_name")
    if not database:
        return None
    role = quote(str(password.get("role_name", "")), safe="")
    secret = quote(str(password.get("password", "")), safe="")
    host = str(endpoint["host"])
    port = endpoint.get("port") or 5432
    if ":" in host:
        host, port = host.rsplit(":", 1)
    name = quote(str(database), safe="")
    return f"postgresql://{role}:{secret}@{host}:{port}/{name}?sslmode={sslmode}"


def resolve_stage_database_url(stage: str, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    url = env.get(STAGE_URL_ENV, "").strip()
    if url:
        return url
    from forkstage.context import Project
    from forkstage.embedded import ensure_running
    from forkstage.state import StateReader

    project = Project.load()
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
