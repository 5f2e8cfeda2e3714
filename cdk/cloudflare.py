"""Cloudflare: a stage's Hyperdrive config in front of its branch, and its Worker.

Names default to ``<app>-<id>-<stage>``, the account id and compatibility date to the stack's
settings (``ForkstageStack.of``); the provider block is declared by the first construct.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from cdktf import ITerraformDependable
from constructs import Construct

from cdk.postgres import PostgresOrigin
from cdk.providers.generated import cloudflare
from cdk.stack import ForkstageStack

__all__ = ["Hyperdrive", "PostgresOrigin", "Worker", "terraform_literal"]


def terraform_literal(text: str) -> str:
    """Escape Terraform's template sequences so a JS bundle reaches the provider verbatim.

    Terraform reads every JSON string as a template: `${` and `%{` in JavaScript would be taken as
    interpolations and directives.
    """
    return text.replace("${", "$${").replace("%{", "%%{")


def _stack(scope: Construct) -> ForkstageStack:
    stack = ForkstageStack.of(scope)
    stack.use_provider("cloudflare", cloudflare.CloudflareProvider)
    return stack


class Hyperdrive(Construct):
    """A Hyperdrive config in front of ``origin``; it waits for what the origin waits for."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        origin: PostgresOrigin,
        name: str | None = None,
        account_id: str | None = None,
        depends_on: Sequence[ITerraformDependable] = (),
    ) -> None:
        stack = _stack(scope)
        super().__init__(scope, id_)
        self.origin = origin
        waits_for = [*origin.depends_on, *depends_on]
        self.config = cloudflare.HyperdriveConfig(
            self,
            "config",
            account_id=account_id or stack.settings.cloudflare_account_id,
            name=name or stack.resource_name(id_),
            origin={
                "scheme": "postgresql",
                "host": origin.host,
                "port": origin.port,
                "database": origin.database,
                "user": origin.user,
                "password": origin.password,
            },
            depends_on=waits_for or None,
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
        source: Path,
        hyperdrive: Hyperdrive,
        script_name: str | None = None,
        account_id: str | None = None,
        compatibility_date: str | None = None,
        binding_name: str = "HYPERDRIVE",
    ) -> None:
        stack = _stack(scope)
        super().__init__(scope, id_)
        settings = stack.settings
        code = source.read_text()
        self.content_sha256 = hashlib.sha256(code.encode()).hexdigest()
        self.module_name = source.name
        self.script = cloudflare.WorkersScript(
            self,
            "script",
            account_id=account_id or settings.cloudflare_account_id,
            script_name=script_name or stack.resource_name(id_),
            content=terraform_literal(code),
            main_module=source.name,
            compatibility_date=compatibility_date or settings.compatibility_date,
            compatibility_flags=["nodejs_compat"],
            bindings=[{"type": "hyperdrive", "name": binding_name, "id": hyperdrive.id}],
        )

    @property
    def name(self) -> str:
        return self.script.script_name
