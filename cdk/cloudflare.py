"""Cloudflare: a stage's Hyperdrive config in front of its branch, and its Worker."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cdktf import ITerraformDependable
from constructs import Construct

from cdk.providers.generated import cloudflare


def terraform_literal(text: str) -> str:
    """Escape Terraform's template sequences so a JS bundle reaches the provider verbatim.

    Terraform reads every JSON string as a template: `${` and `%{` in JavaScript would be taken as
    interpolations and directives.
    """
    return text.replace("${", "$${").replace("%{", "%%{")


@dataclass(frozen=True)
class PostgresOrigin:
    """Where Hyperdrive connects: the branch endpoint's direct host and the owner role."""

    host: str
    database: str
    user: str
    password: str
    port: int = 5432


class Hyperdrive(Construct):
    """A Hyperdrive config whose origin is one stage's branch."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        account_id: str,
        name: str,
        origin: PostgresOrigin,
        depends_on: list[ITerraformDependable] | None = None,
    ) -> None:
        super().__init__(scope, id_)
        self.config = cloudflare.HyperdriveConfig(
            self,
            "config",
            account_id=account_id,
            name=name,
            origin={
                "scheme": "postgresql",
                "host": origin.host,
                "port": origin.port,
                "database": origin.database,
                "user": origin.user,
                "password": origin.password,
            },
            depends_on=depends_on,
        )

    @property
    def id(self) -> str:
        return self.config.id


class Worker(Construct):
    """A Worker script (ES module) with a ``HYPERDRIVE`` binding to the stage's Hyperdrive."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        account_id: str,
        script_name: str,
        source: Path,
        hyperdrive: Hyperdrive,
        compatibility_date: str,
        binding_name: str = "HYPERDRIVE",
    ) -> None:
        super().__init__(scope, id_)
        code = source.read_text()
        self.content_sha256 = hashlib.sha256(code.encode()).hexdigest()
        self.module_name = source.name
        self.script = cloudflare.WorkersScript(
            self,
            "script",
            account_id=account_id,
            script_name=script_name,
            content=terraform_literal(code),
            main_module=source.name,
            compatibility_date=compatibility_date,
            compatibility_flags=["nodejs_compat"],
            bindings=[{"type": "hyperdrive", "name": binding_name, "id": hyperdrive.id}],
        )

    @property
    def name(self) -> str:
        return self.script.script_name
