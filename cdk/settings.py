"""Project settings, read from one file (``forkstage.toml`` at the project root).

Everything a stage's Terraform config depends on, besides the stage name, comes from here, so
`python main.py`, `npx cdktf synth` and `forkstage synth` all agree.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

SETTINGS_FILE = "forkstage.toml"
EMBEDDED_ENDPOINT = "http://127.0.0.1:4599"


class SettingsError(ValueError):
    """forkstage.toml is unreadable or holds a value we cannot use."""


@dataclass(frozen=True)
class BackendSettings:
    """Where every stage's state lives (an S3 API: the embedded server, S3 or R2)."""

    kind: Literal["embedded", "s3"] = "embedded"
    endpoint: str = EMBEDDED_ENDPOINT
    bucket: str = "forkstage-state"
    key: str = "forkstage/terraform.tfstate"
    region: str = "us-east-1"

    @property
    def embedded(self) -> bool:
        return self.kind == "embedded"


@dataclass(frozen=True)
class Settings:
    """One app's settings; defaults make a fresh project work on the embedded backend."""

    root: Path
    app: str = "forkstage"
    owner_stage: str = "staging"
    referencing: tuple[str, ...] = ("pr-*",)
    long_lived: tuple[str, ...] = ("staging", "prod")
    protected: tuple[str, ...] = ("prod",)
    neon_region: str = "aws-us-east-1"
    neon_pg_version: int = 16
    fork_from: Literal["default", "owner-branch"] = "default"
    cloudflare_account_id: str = ""
    compatibility_date: str = "2025-09-01"
    worker_dir: str = "worker"
    migrations_dir: str = "migrations"
    target: Literal["local", "cloud"] = "local"
    backend: BackendSettings = field(default_factory=BackendSettings)

    @property
    def worker_path(self) -> Path:
        return self.root / self.worker_dir

    @property
    def migrations_path(self) -> Path:
        return self.root / self.migrations_dir


def _get(table: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = table.get(key, default)
    if kind is tuple:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise SettingsError(f"{SETTINGS_FILE}: `{key}` must be a list of strings")
        return tuple(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SettingsError(f"{SETTINGS_FILE}: `{key}` must be a {kind.__name__}")
    return value


def load_settings(root: Path, environ: dict[str, str] | None = None) -> Settings:
    """Read ``forkstage.toml`` under root (missing file = all defaults).

    ``FORKSTAGE_BACKEND_KIND`` / ``_ENDPOINT`` / ``_BUCKET`` override the backend, so CI can point
    the same project at a real bucket (or tests at their own port) without editing the file.
    """
    env = dict(os.environ if environ is None else environ)
    path = root / SETTINGS_FILE
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{SETTINGS_FILE} is not valid TOML: {exc}") from None
    d = Settings(root=root)
    app = data.get("app", {})
    stages = data.get("stages", {})
    neon = data.get("neon", {})
    cf = data.get("cloudflare", {})
    be = data.get("backend", {})
    paths = data.get("paths", {})
    db = BackendSettings()
    kind = _get(be, "kind", str, db.kind)
    env_endpoint = env.get("FORKSTAGE_BACKEND_ENDPOINT", "")
    if env_endpoint and not env_endpoint.startswith(("http://127.0.0.1:", "https://127.0.0.1:")):
        kind = "s3"  # a CI job pointed at a real bucket
    kind = env.get("FORKSTAGE_BACKEND_KIND") or kind
    endpoint = env.get("FORKSTAGE_BACKEND_ENDPOINT") or _get(be, "endpoint", str, db.endpoint)
    bucket = env.get("FORKSTAGE_BACKEND_BUCKET") or _get(be, "bucket", str, db.bucket)
    if kind not in ("embedded", "s3"):
        raise SettingsError(f'{SETTINGS_FILE}: backend.kind must be "embedded" or "s3"')
    if kind == "embedded" and not endpoint.startswith(("http://127.0.0.1:", "https://127.0.0.1:")):
        raise SettingsError(
            f"{SETTINGS_FILE}: the embedded backend listens on 127.0.0.1 only; "
            "set backend.endpoint to http://127.0.0.1:<port>"
        )
    backend = BackendSettings(
        kind=cast(Literal["embedded", "s3"], kind),
        endpoint=endpoint.rstrip("/"),
        bucket=bucket,
        key=_get(be, "key", str, db.key),
        region=_get(be, "region", str, db.region),
    )
    fork_from = _get(neon, "fork_from", str, d.fork_from)
    if fork_from not in ("default", "owner-branch"):
        raise SettingsError(f'{SETTINGS_FILE}: neon.fork_from must be "default" or "owner-branch"')
    target_table = data.get("target", {})
    target = env.get("FORKSTAGE_TARGET") or _get(target_table, "kind", str, d.target)
    if target not in ("local", "cloud"):
        raise SettingsError(f'{SETTINGS_FILE}: target.kind must be "local" or "cloud"')
    settings = Settings(
        root=root,
        target=cast(Literal["local", "cloud"], target),
        app=_get(app, "name", str, d.app),
        owner_stage=_get(stages, "owner", str, d.owner_stage),
        referencing=_get(stages, "referencing", tuple, d.referencing),
        long_lived=_get(stages, "long_lived", tuple, d.long_lived),
        protected=_get(stages, "protected", tuple, d.protected),
        neon_region=_get(neon, "region", str, d.neon_region),
        neon_pg_version=_get(neon, "pg_version", int, d.neon_pg_version),
        fork_from=cast(Literal["default", "owner-branch"], fork_from),
        cloudflare_account_id=env.get("CLOUDFLARE_ACCOUNT_ID")
        or _get(cf, "account_id", str, d.cloudflare_account_id),
        compatibility_date=_get(cf, "compatibility_date", str, d.compatibility_date),
        worker_dir=_get(paths, "worker", str, d.worker_dir),
        migrations_dir=_get(paths, "migrations", str, d.migrations_dir),
        backend=backend,
    )
    return settings
