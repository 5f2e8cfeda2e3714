"""Stand-in for the ``cloudflare/cloudflare`` Terraform provider (Hyperdrive and Workers only).

Nothing is served here: the stand-in records each Hyperdrive origin and each Worker's code and
bindings (``localcloud.cloudflare``) so a later local runtime can run the stage's Worker.
As on Cloudflare, creating a Hyperdrive config checks that its origin accepts the credentials
(when the origin is a local Neon endpoint), and a Worker's Hyperdrive binding must name an
existing config.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any, ClassVar

from cdk.providers.pins import CLOUDFLARE
from localcloud.cloudflare import Account, CloudflareError, NotFound
from localcloud.neon import HOST_SUFFIX
from localcloud.providers.server import serve
from localcloud.providers.standin import ProviderError, Resource, StandIn
from localcloud.providers.values import Value, known

_HYPERDRIVE_SETTINGS = ("name", "origin", "caching", "mtls", "origin_connection_limit")
_SCRIPT_SETTINGS = (
    "main_module",
    "body_part",
    "compatibility_date",
    "compatibility_flags",
    "bindings",
    "placement",
    "limits",
    "observability",
    "usage_model",
    "logpush",
    "content_type",
)


def _fail(exc: CloudflareError, what: str) -> ProviderError:
    return ProviderError(
        f"{what}: {exc}", f"local Cloudflare account, HTTP-like status {exc.status}"
    )


class HyperdriveConfig(Resource):
    backend: Account
    replace_on: ClassVar[frozenset[str]] = frozenset({"account_id"})
    recompute_on_update: ClassVar[frozenset[str]] = frozenset({"modified_on"})

    @classmethod
    def validate(cls, config: dict[str, Value]) -> None:
        origin = config.get("origin")
        if isinstance(origin, dict):
            scheme = origin.get("scheme")
            if isinstance(scheme, str) and scheme not in ("postgres", "postgresql", "mysql"):
                raise ProviderError(
                    'origin.scheme must be "postgres", "postgresql" or "mysql"', attribute="origin"
                )

    def _check_origin(self, origin: dict[str, Value]) -> None:
        """Cloudflare connects to the origin when a config is saved; so do we, for local hosts."""
        if not str(origin.get("host", "")).endswith(HOST_SUFFIX):
            return
        import psycopg

        from localcloud.neon import ControlPlane

        try:
            host, port = ControlPlane(self.backend.home).resolve_host(origin["host"])
            psycopg.connect(
                host=host,
                port=port,
                user=origin["user"],
                password=origin["password"],
                dbname=origin["database"],
                connect_timeout=5,
            ).close()
        except Exception as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise ProviderError(
                "Failed to connect to the provided database origin",
                f"{origin['host']} (local Neon endpoint): {reason}",
                attribute="origin",
            ) from None

    def _settings(self, planned: dict[str, Value]) -> dict[str, Any]:
        return {k: known(planned.get(k)) for k in _HYPERDRIVE_SETTINGS}

    def create(self, planned: dict[str, Value]) -> dict[str, Value]:
        self._check_origin(planned["origin"])
        record = self.backend.put_hyperdrive(planned["account_id"], self._settings(planned))
        return {**planned, **{k: record[k] for k in ("id", "created_on", "modified_on")}}

    def read(self, current: dict[str, Value]) -> dict[str, Value] | None:
        try:
            record = self.backend.get_hyperdrive(current["account_id"], current["id"])
        except NotFound:
            return None
        return {**current, **{k: record[k] for k in ("created_on", "modified_on")}}

    def update(self, prior: dict[str, Value], planned: dict[str, Value]) -> dict[str, Value]:
        self._check_origin(planned["origin"])
        try:
            record = self.backend.put_hyperdrive(
                prior["account_id"], self._settings(planned), hyperdrive_id=prior["id"]
            )
        except CloudflareError as exc:
            raise _fail(exc, "updating the Hyperdrive config") from exc
        return {**planned, **{k: record[k] for k in ("created_on", "modified_on")}}

    def delete(self, prior: dict[str, Value]) -> None:
        with contextlib.suppress(NotFound):
            self.backend.delete_hyperdrive(prior["account_id"], prior["id"])


class WorkersScript(Resource):
    backend: Account
    replace_on: ClassVar[frozenset[str]] = frozenset({"account_id", "script_name"})
    recompute_on_update: ClassVar[frozenset[str]] = frozenset(
        {"modified_on", "etag", "handlers", "named_handlers", "startup_time_ms", "has_modules"}
    )

    @classmethod
    def validate(cls, config: dict[str, Value]) -> None:
        if config.get("content") is not None and config.get("content_file") is not None:
            raise ProviderError("set content or content_file, not both", attribute="content")

    def _content(self, planned: dict[str, Value]) -> str:
        content = known(planned.get("content"))
        if content is not None:
            return str(content)
        path = known(planned.get("content_file"))
        if path is None:
            raise ProviderError("a Worker needs content or content_file", attribute="content")
        try:
            return Path(path).read_text()
        except OSError as exc:
            raise ProviderError(
                f"cannot read content_file {path}: {exc.strerror}", attribute="content_file"
            ) from None

    def _put(self, planned: dict[str, Value]) -> dict[str, Value]:
        content = self._content(planned)
        expected = known(planned.get("content_sha256"))
        if expected and expected != hashlib.sha256(content.encode()).hexdigest():
            raise ProviderError(
                "content_sha256 does not match the content", attribute="content_sha256"
            )
        settings = {k: known(planned.get(k)) for k in _SCRIPT_SETTINGS}
        try:
            record = self.backend.put_script(
                planned["account_id"], planned["script_name"], content=content, settings=settings
            )
        except CloudflareError as exc:
            raise _fail(exc, "uploading the Worker") from exc
        return {
            "id": planned["script_name"],
            "created_on": record["created_on"],
            "modified_on": record["modified_on"],
            "etag": record["etag"],
            "has_modules": planned.get("main_module") is not None,
            "has_assets": False,
            "handlers": ["fetch"],
            "startup_time_ms": 0,
            "usage_model": "standard",
            "logpush": False,
            "compatibility_flags": [],
            "bindings": [],
        }

    def create(self, planned: dict[str, Value]) -> dict[str, Value]:
        return self._put(planned)

    def read(self, current: dict[str, Value]) -> dict[str, Value] | None:
        try:
            record = self.backend.get_script(current["account_id"], current["script_name"])
        except NotFound:
            return None
        return {**current, **{k: record[k] for k in ("created_on", "modified_on", "etag")}}

    def update(self, prior: dict[str, Value], planned: dict[str, Value]) -> dict[str, Value]:
        return self._put(planned)

    def delete(self, prior: dict[str, Value]) -> None:
        with contextlib.suppress(NotFound):
            self.backend.delete_script(prior["account_id"], prior["script_name"])


def standin(schema_dir: Path | None = None) -> StandIn:
    return StandIn(
        pin=CLOUDFLARE,
        resources={
            "cloudflare_hyperdrive_config": HyperdriveConfig,
            "cloudflare_workers_script": WorkersScript,
        },
        data_sources={},
        backend=Account,
        schema_dir=schema_dir,
    )


def main() -> None:
    serve(standin())


if __name__ == "__main__":
    main()
