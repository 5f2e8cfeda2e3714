"""Stand-in for the ``cloudflare/cloudflare`` Terraform provider (Hyperdrive and Workers only).

The stand-in records each Hyperdrive origin and each Worker's code and bindings
(``localcloud.cloudflare``) and, as on Cloudflare, a Worker is live while its script exists:
uploading a script (re)starts its Worker with Miniflare, deleting it stops it, and a Hyperdrive
change reaches the Workers bound to it (``localcloud.live_workers``). As on Cloudflare, creating
a Hyperdrive config checks that its origin accepts the credentials (when the origin is a local
Neon endpoint), and a Worker's Hyperdrive binding must name an existing config. workers.dev is
switched per script, as by the real ``cloudflare_workers_script_subdomain``; the local cloud
serves every Worker on 127.0.0.1 whatever that switch says.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any, ClassVar

from cdk.providers.pins import CLOUDFLARE
from localcloud import live_workers
from localcloud.cloudflare import Account, CloudflareError, NotFound
from localcloud.neon import HOST_SUFFIX
from localcloud.providers.server import serve
from localcloud.providers.standin import ProviderError, Resource, StandIn
from localcloud.providers.values import Value, known
from localcloud.workers import WorkerError

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
        # best effort: a Worker that cannot follow stays stopped, its log says why, and the
        # next read of its script starts it again
        with contextlib.suppress(CloudflareError, WorkerError):
            live_workers.restart_bound(self.backend, prior["account_id"], prior["id"])
        return {**planned, **{k: record[k] for k in ("created_on", "modified_on")}}

    def delete(self, prior: dict[str, Value]) -> None:
        with contextlib.suppress(NotFound):
            self.backend.delete_hyperdrive(prior["account_id"], prior["id"])


def _file_sha256(path: str) -> str:
    """Hex SHA-256 of a file's bytes; a leading ``~/`` is the user's home, as the provider's
    ``calculateFileHash`` (internal/services/workers_script/custom.go) reads it."""
    return hashlib.sha256(Path(os.path.expanduser(path)).read_bytes()).hexdigest()


class WorkersScript(Resource):
    backend: Account
    replace_on: ClassVar[frozenset[str]] = frozenset({"account_id", "script_name"})
    recompute_on_update: ClassVar[frozenset[str]] = frozenset(
        {"modified_on", "etag", "handlers", "named_handlers", "startup_time_ms", "has_modules"}
    )

    @classmethod
    def validate(cls, config: dict[str, Value]) -> None:
        """The provider's own config checks (internal/services/workers_script/schema.go and
        custom.go): ``content_file`` conflicts with ``content`` and needs ``content_sha256``,
        which must be the hex SHA-256 of ``content`` or of the file. Relative paths are read
        from the working directory Terraform runs in, as the real provider reads them."""
        content, path = config.get("content"), config.get("content_file")
        expected = config.get("content_sha256")
        if content is not None and path is not None:
            raise ProviderError(
                "Invalid Attribute Combination",
                'Attribute "content_file" cannot be specified when "content" is specified',
                attribute="content_file",
            )
        if isinstance(path, str) and expected is None:
            raise ProviderError(
                "Invalid Attribute Combination",
                'Attribute "content_sha256" must be specified when "content_file" is specified',
                attribute="content_file",
            )
        if not isinstance(expected, str):
            return  # null or not known yet
        if isinstance(content, str):
            actual, source = hashlib.sha256(content.encode()).hexdigest(), "content"
        elif isinstance(path, str):
            try:
                actual = _file_sha256(path)
            except OSError as exc:
                raise ProviderError(
                    "Hash Calculation Error",
                    f"Failed to calculate SHA-256 hash of file '{path}': failed to open file: "
                    f"open {path}: {(exc.strerror or str(exc)).lower()}",
                    attribute="content_sha256",
                ) from None
            source = f"content_file ({path})"
        else:
            return
        if expected != actual:
            raise ProviderError(
                "SHA-256 Hash Mismatch",
                f"The provided SHA-256 hash '{expected}' does not match the actual hash "
                f"'{actual}' of {source}",
                attribute="content_sha256",
            )

    def _content(self, planned: dict[str, Value]) -> str:
        content = known(planned.get("content"))
        if content is not None:
            return str(content)
        path = known(planned.get("content_file"))
        if path is None:
            raise ProviderError("a Worker needs content or content_file", attribute="content")
        try:
            # bytes as they are (no newline translation): content_sha256 is over the file
            return Path(os.path.expanduser(path)).read_bytes().decode()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ProviderError(
                f"could not read file {path}: {why}", attribute="content_file"
            ) from None

    def _put(self, planned: dict[str, Value], *, created: bool) -> dict[str, Value]:
        content = self._content(planned)
        expected = known(planned.get("content_sha256"))
        if expected and expected != hashlib.sha256(content.encode()).hexdigest():
            raise ProviderError(
                "content_sha256 does not match the content", attribute="content_sha256"
            )
        account_id, name = planned["account_id"], planned["script_name"]
        settings = {k: known(planned.get(k)) for k in _SCRIPT_SETTINGS}
        try:
            record = self.backend.put_script(account_id, name, content=content, settings=settings)
        except CloudflareError as exc:
            raise _fail(exc, "uploading the Worker") from exc
        try:  # live from now on, as on Cloudflare: a script that does not start is refused
            live_workers.ensure_worker(self.backend, account_id, name)
        except (CloudflareError, WorkerError) as exc:
            if created:
                with contextlib.suppress(NotFound):
                    self.backend.delete_script(account_id, name)
            raise ProviderError(
                f"uploading the Worker: {name} does not start on the local cloud", str(exc)
            ) from None
        return {
            "id": name,
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
        return self._put(planned, created=True)

    def read(self, current: dict[str, Value]) -> dict[str, Value] | None:
        try:
            record = self.backend.get_script(current["account_id"], current["script_name"])
        except NotFound:
            return None
        # a Worker whose process is gone (a reboot, `forkstage local down`) wakes when read, as
        # local Neon endpoints do; best effort, so a plan or a destroy never fails on it
        with contextlib.suppress(CloudflareError, WorkerError):
            live_workers.ensure_worker(self.backend, current["account_id"], current["script_name"])
        return {**current, **{k: record[k] for k in ("created_on", "modified_on", "etag")}}

    def update(self, prior: dict[str, Value], planned: dict[str, Value]) -> dict[str, Value]:
        return self._put(planned, created=False)

    def delete(self, prior: dict[str, Value]) -> None:
        with contextlib.suppress(NotFound):
            self.backend.delete_script(prior["account_id"], prior["script_name"])
        live_workers.stop_worker(self.backend.home, prior["script_name"])


class WorkersScriptSubdomain(Resource):
    """workers.dev on or off for one script, as cloudflare/cloudflare v5.22.0 does it
    (internal/services/workers_script_subdomain): ``account_id`` and ``script_name`` replace,
    ``enabled``/``previews_enabled`` update in place, create and update POST the setting (404
    when the script does not exist), a read of a deleted script drops the resource, delete
    switches it off."""

    backend: Account
    replace_on: ClassVar[frozenset[str]] = frozenset({"account_id", "script_name"})

    def _post(self, planned: dict[str, Value]) -> dict[str, Value]:
        account_id, name = planned["account_id"], planned["script_name"]
        previews = known(planned.get("previews_enabled"))
        try:
            record = self.backend.set_subdomain(
                account_id,
                name,
                enabled=bool(planned["enabled"]),
                previews_enabled=None if previews is None else bool(previews),
            )
        except CloudflareError as exc:
            raise _fail(exc, f"enabling workers.dev for {name}") from exc
        return {**planned, "id": name, **record}

    def create(self, planned: dict[str, Value]) -> dict[str, Value]:
        return self._post(planned)

    def read(self, current: dict[str, Value]) -> dict[str, Value] | None:
        try:
            record = self.backend.get_subdomain(current["account_id"], current["script_name"])
        except NotFound:
            return None
        return {**current, **record}

    def update(self, prior: dict[str, Value], planned: dict[str, Value]) -> dict[str, Value]:
        return self._post(planned)

    def delete(self, prior: dict[str, Value]) -> None:
        with contextlib.suppress(NotFound):
            self.backend.set_subdomain(
                prior["account_id"], prior["script_name"], enabled=False, previews_enabled=False
            )


def standin(schema_dir: Path | None = None) -> StandIn:
    return StandIn(
        pin=CLOUDFLARE,
        resources={
            "cloudflare_hyperdrive_config": HyperdriveConfig,
            "cloudflare_workers_script": WorkersScript,
            "cloudflare_workers_script_subdomain": WorkersScriptSubdomain,
        },
        data_sources={},
        backend=Account,
        schema_dir=schema_dir,
    )


def main() -> None:
    serve(standin())


if __name__ == "__main__":
    main()
