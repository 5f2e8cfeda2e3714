"""Cloudflare: a stage's Hyperdrive config in front of its branch, and its Worker on workers.dev.

Names default to ``<app>-<id>-<stage>``, the account id and compatibility date to the stack's
settings (``ForkstageStack.of``); the provider block is declared by the first construct.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from constructs import Construct

from cdk.core import AssetType, ITerraformDependable, TerraformAsset, TerraformOutput
from cdk.postgres import PostgresOrigin
from cdk.providers.generated import cloudflare
from cdk.stack import ForkstageStack

__all__ = ["Hyperdrive", "PostgresOrigin", "Worker"]


def _stack(scope: Construct) -> ForkstageStack:
    stack = ForkstageStack.of(scope)
    stack.use_provider("cloudflare", cloudflare.CloudflareProvider)
    return stack


class Hyperdrive(Construct):
    """A Hyperdrive config in front of ``origin``; it waits for what the origin waits for.

    Hyperdrive caches read queries by default (60 s max age, 15 s stale-while-revalidate), so a
    preview that writes and then reads would see the old rows: ``caching_disabled`` defaults to
    ``[cloudflare] hyperdrive_caching`` (unset: off for referencing stages, Cloudflare's default
    for the others). None sends no ``caching`` block.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        origin: PostgresOrigin,
        name: str | None = None,
        account_id: str | None = None,
        depends_on: Sequence[ITerraformDependable] = (),
        caching_disabled: bool | None = None,
    ) -> None:
        stack = _stack(scope)
        super().__init__(scope, id_)
        self.origin = origin
        waits_for = [*origin.depends_on, *depends_on]
        if caching_disabled is None:
            caching_disabled = stack.settings.hyperdrive_caching_disabled(
                stack.stage.is_referencing
            )
        self.caching_disabled = caching_disabled
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
            caching=None if caching_disabled is None else {"disabled": caching_disabled},
            depends_on=waits_for or None,
        )

    @property
    def id(self) -> str:
        return self.config.id


class Worker(Construct):
    """A Worker script (ES module) with a ``HYPERDRIVE`` binding, reachable on workers.dev.

    A script answers on ``https://<script>.<account subdomain>.workers.dev`` only once
    ``cloudflare_workers_script_subdomain`` enables it (cloudflare/cloudflare v5.22.0,
    internal/services/workers_script_subdomain); the provider cannot read the account's
    subdomain, so it comes from ``cloudflare.workers_subdomain``. The Worker publishes the URL
    as the output ``worker_url``.

    The code travels as a file, not inline: ``source`` is copied into the synthesized stack as an
    asset and the script names it with ``content_file`` plus its ``content_sha256`` (hex SHA-256
    of the file's bytes, which the provider checks against the file), so plans and diffs show a
    hash instead of the bundle, and the file is read verbatim (no template escaping).
    """

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
        workers_subdomain: str | None = None,
    ) -> None:
        stack = _stack(scope)
        super().__init__(scope, id_)
        settings = stack.settings
        source = Path(source).resolve()
        self.content_sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
        self.module_name = source.name
        # assets/<logical id>/<hash>/<file name>, relative to the stack folder (Terraform's
        # working directory), so the config is the same on every machine
        self.code = TerraformAsset(self, "code", path=str(source), type=AssetType.FILE)
        self.script = cloudflare.WorkersScript(
            self,
            "script",
            account_id=account_id or settings.cloudflare_account_id,
            script_name=script_name or stack.resource_name(id_),
            content_file=self.code.path,
            content_sha256=self.content_sha256,
            main_module=source.name,
            compatibility_date=compatibility_date or settings.compatibility_date,
            compatibility_flags=["nodejs_compat"],
            bindings=[{"type": "hyperdrive", "name": binding_name, "id": hyperdrive.id}],
        )
        self.subdomain = cloudflare.WorkersScriptSubdomain(
            self,
            "subdomain",
            account_id=account_id or settings.cloudflare_account_id,
            script_name=self.script.script_name,  # a reference: enabled after the upload
            enabled=True,
        )
        subdomain = workers_subdomain or settings.cloudflare_workers_subdomain
        self.url = f"https://{self.subdomain.script_name}.{subdomain}.workers.dev"
        TerraformOutput(self, "worker_url", value=self.url, static_id=True)

    @property
    def name(self) -> str:
        return self.script.script_name
