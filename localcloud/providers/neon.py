"""Stand-in for the ``kislerdm/neon`` Terraform provider, backed by the local Neon control plane.

Terraform starts it through the launcher that ``localcloud.registry`` installs
(``python -m localcloud.providers.neon``). Resource semantics follow the real provider
(kislerdm/neon v0.15.0, ``provider/resource_*.go``; see docs/provider-behaviour.md): replacement
only on the attributes the real one marks ForceNew, in-place updates that send what the real one
sends, the Free plan's API-side limits, "gone" after a 404 (Terraform then plans a create),
deleting an already deleted branch is a no-op, and a role password read that fails returns "".
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, ClassVar

from cdk.providers.pins import NEON
from localcloud.neon import (
    DEFAULT_RETENTION,
    PROXY_HOST,
    ControlPlane,
    Endpoint,
    NeonError,
    NotFound,
    Project,
)
from localcloud.providers.server import serve
from localcloud.providers.standin import DataSource, ProviderError, Resource, StandIn
from localcloud.providers.values import Value, known


def _fail(exc: NeonError, what: str) -> ProviderError:
    return ProviderError(
        f"{what}: {exc}", f"local Neon control plane, HTTP-like status {exc.status}"
    )


def _yes(value: Value, default: bool) -> bool:
    value = known(value)
    return default if value is None else str(value).lower() in ("yes", "true")


class ProjectResource(Resource):
    backend: ControlPlane
    # resource_project.go: ForceNew on org_id, region_id, pg_version and the branch block only.
    replace_on: ClassVar[frozenset[str]] = frozenset(
        {"region_id", "pg_version", "org_id", "branch"}
    )

    @classmethod
    def validate(cls, config: dict[str, Value]) -> None:
        for flag in ("store_password", "enable_logical_replication", "hipaa"):
            value = config.get(flag)
            if isinstance(value, str) and value not in ("yes", "no"):
                raise ProviderError(f'{flag} must be "yes" or "no"', attribute=flag)

    def _facts(self, project: Project, planned: dict[str, Value]) -> dict[str, Value]:
        cp = self.backend
        endpoint = cp.get_endpoint(project.id, project.default_endpoint_id)
        branch = cp.get_branch(project.id, project.default_branch_id)
        password = branch.roles[project.role_name]
        url = cp.branch_url(project.id, branch.id)
        facts: dict[str, Value] = {
            **planned,
            "id": project.id,
            "name": project.name,
            "region_id": project.region_id,
            "pg_version": project.pg_version,
            "default_branch_id": project.default_branch_id,
            "default_endpoint_id": project.default_endpoint_id,
            "database_host": endpoint.host,
            "database_host_pooler": endpoint.pooler_host,
            "database_name": project.database_name,
            "database_user": project.role_name,
            "database_password": password,
            "connection_uri": url,
            "connection_uri_pooler": url,
        }
        blocks = planned.get("branch") or []
        if blocks:
            facts["branch"] = [
                {
                    **blocks[0],
                    "id": branch.id,
                    "name": branch.name,
                    "database_name": project.database_name,
                    "role_name": project.role_name,
                }
            ]
        return facts

    def create(self, planned: dict[str, Value]) -> dict[str, Value]:
        branch = (known(planned.get("branch")) or [{}])[0]
        pg_version = known(planned.get("pg_version"))
        try:
            project = self.backend.create_project(
                name=known(planned.get("name")),
                region_id=known(planned.get("region_id")),
                pg_version=int(pg_version) if pg_version is not None else None,
                branch_name=known(branch.get("name")),
                database_name=known(branch.get("database_name")),
                role_name=known(branch.get("role_name")),
                store_password=_yes(planned.get("store_password"), True),
                org_id=known(planned.get("org_id")),
                history_retention_seconds=_retention(planned),
            )
        except NeonError as exc:
            raise _fail(exc, "creating the project") from exc
        return self._facts(project, planned)

    def read(self, current: dict[str, Value]) -> dict[str, Value] | None:
        try:
            project = self.backend.get_project(current["id"])
            self.backend.wake(project.default_endpoint_id)
            return self._facts(project, current)
        except NotFound:
            return None

    def update(self, prior: dict[str, Value], planned: dict[str, Value]) -> dict[str, Value]:
        try:
            cp = self.backend
            cp.set_retention(prior["id"], _retention(planned))
            if known(planned.get("name")):
                cp.rename_project(prior["id"], planned["name"])
            cp.set_store_password(prior["id"], _yes(planned.get("store_password"), True))
            return self._facts(cp.get_project(prior["id"]), planned)
        except NeonError as exc:
            raise _fail(exc, "updating the project") from exc

    def delete(self, prior: dict[str, Value]) -> None:
        with contextlib.suppress(NotFound):
            self.backend.delete_project(prior["id"])


class BranchResource(Resource):
    """resource_branch.go: only parent_lsn/parent_timestamp are ForceNew; an update sends only
    name and protected, so a changed parent_id is not re-forked and its diff stays."""

    backend: ControlPlane
    replace_on: ClassVar[frozenset[str]] = frozenset({"parent_lsn", "parent_timestamp"})

    @classmethod
    def validate(cls, config: dict[str, Value]) -> None:
        for attr in ("parent_lsn", "parent_timestamp"):
            if config.get(attr) is not None:
                raise ProviderError(
                    f"{attr} is not emulated locally",
                    "Local branches fork from the parent's current state; drop the attribute "
                    "for local stages.",
                    attribute=attr,
                )

    def create(self, planned: dict[str, Value]) -> dict[str, Value]:
        try:
            branch = self.backend.create_branch(
                planned["project_id"],
                name=known(planned.get("name")),
                parent_id=known(planned.get("parent_id")),
            )
            if known(planned.get("protected")) == "yes":
                branch = self.backend.update_branch(
                    branch.project_id, branch.id, name=branch.name, protected=True
                )
        except NeonError as exc:
            raise _fail(exc, "creating the branch") from exc
        return {
            **planned,
            "id": branch.id,
            "name": branch.name,
            "parent_id": branch.parent_id,
            "logical_size": branch.logical_size,
        }

    def read(self, current: dict[str, Value]) -> dict[str, Value] | None:
        try:
            branch = self.backend.get_branch(current["project_id"], current["id"])
        except NotFound:
            return None
        return {**current, "name": branch.name, "parent_id": branch.parent_id}

    def update(self, prior: dict[str, Value], planned: dict[str, Value]) -> dict[str, Value]:
        try:
            branch = self.backend.update_branch(
                prior["project_id"],
                prior["id"],
                name=known(planned.get("name")),
                protected=known(planned.get("protected")) == "yes",
            )
        except NeonError as exc:
            raise _fail(exc, "updating the branch") from exc
        return {**planned, "name": branch.name}

    def delete(self, prior: dict[str, Value]) -> None:
        try:
            self.backend.delete_branch(prior["project_id"], prior["id"])
        except NotFound:
            pass  # already gone: the real provider drops it from state too
        except NeonError as exc:
            raise _fail(exc, "deleting the branch") from exc


_ENDPOINT_SETTINGS = (
    "autoscaling_limit_min_cu",
    "autoscaling_limit_max_cu",
    "suspend_timeout_seconds",
    "pg_settings",
    "pooler_enabled",
    "pooler_mode",
    "disabled",
    "compute_provisioner",
)


class EndpointResource(Resource):
    """resource_endpoint.go: only region_id is ForceNew; an update sends branch_id (the endpoint
    moves to that branch) and the compute settings, never type (its diff stays)."""

    backend: ControlPlane
    replace_on: ClassVar[frozenset[str]] = frozenset({"region_id"})

    @classmethod
    def validate(cls, config: dict[str, Value]) -> None:
        kind = config.get("type")
        if isinstance(kind, str) and kind not in ("read_write", "read_only"):
            raise ProviderError('type must be "read_write" or "read_only"', attribute="type")

    def _facts(self, endpoint: Endpoint) -> dict[str, Value]:
        """What the control plane knows; apply keeps planned known values over these."""
        project = self.backend.get_project(endpoint.project_id)
        return {
            "autoscaling_limit_min_cu": 0.25,
            "autoscaling_limit_max_cu": 0.25,
            "suspend_timeout_seconds": 0,
            "pooler_enabled": False,
            "pooler_mode": "transaction",
            "disabled": False,
            "compute_provisioner": "k8s-neonvm",
            "id": endpoint.id,
            "host": endpoint.host,
            "proxy_host": PROXY_HOST,
            "region_id": project.region_id,
        }

    def create(self, planned: dict[str, Value]) -> dict[str, Value]:
        try:
            endpoint = self.backend.create_endpoint(
                planned["project_id"],
                planned["branch_id"],
                type=known(planned.get("type")) or "read_write",
            )
            settings = {k: known(planned.get(k)) for k in _ENDPOINT_SETTINGS}
            self.backend.update_endpoint(endpoint.project_id, endpoint.id, settings)
        except NeonError as exc:
            raise _fail(exc, "creating the endpoint") from exc
        return self._facts(endpoint)

    def read(self, current: dict[str, Value]) -> dict[str, Value] | None:
        try:
            self.backend.get_endpoint(current["project_id"], current["id"])
            endpoint = self.backend.wake(current["id"])
        except NotFound:
            return None
        facts = self._facts(endpoint)
        fresh = {k: facts[k] for k in ("id", "host", "proxy_host", "region_id")}
        return {**current, **fresh, "branch_id": endpoint.branch_id, "type": endpoint.type}

    def update(self, prior: dict[str, Value], planned: dict[str, Value]) -> dict[str, Value]:
        try:
            settings = {k: known(planned.get(k)) for k in _ENDPOINT_SETTINGS}
            self.backend.move_endpoint(prior["project_id"], prior["id"], planned["branch_id"])
            self.backend.update_endpoint(prior["project_id"], prior["id"], settings)
            endpoint = self.backend.get_endpoint(prior["project_id"], prior["id"])
        except NeonError as exc:
            raise _fail(exc, "updating the endpoint") from exc
        return self._facts(endpoint)

    def delete(self, prior: dict[str, Value]) -> None:
        try:
            self.backend.delete_endpoint(prior["project_id"], prior["id"])
        except NotFound:
            pass
        except NeonError as exc:
            raise _fail(exc, "deleting the endpoint") from exc


class BranchRolePassword(DataSource):
    """data_source_branch_role_password.go drops API errors: a failed read returns "" and no
    diagnostic. So does this one; forkstage's config guards it with a postcondition."""

    backend: ControlPlane

    def read(self, config: dict[str, Value]) -> dict[str, Value]:
        try:
            password = self.backend.role_password(
                config["project_id"], config["branch_id"], config["role_name"]
            )
        except NeonError:
            password = ""
        return {
            **config,
            "id": f"{config['project_id']}/{config['branch_id']}/{config['role_name']}",
            "password": password,
        }


def _retention(planned: dict[str, Value]) -> int:
    """Unset means the provider's schema default, 86400 (resource_project.go)."""
    value = known(planned.get("history_retention_seconds"))
    return DEFAULT_RETENTION if value is None else int(value)


def standin(schema_dir: Path | None = None) -> StandIn:
    def backend(home: Path) -> Any:
        return ControlPlane(home)

    return StandIn(
        pin=NEON,
        resources={
            "neon_project": ProjectResource,
            "neon_branch": BranchResource,
            "neon_endpoint": EndpointResource,
        },
        data_sources={"neon_branch_role_password": BranchRolePassword},
        backend=backend,
        schema_dir=schema_dir,
    )


def main() -> None:
    serve(standin())


if __name__ == "__main__":
    main()
