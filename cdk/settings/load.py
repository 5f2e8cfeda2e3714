"""``load_settings``: forkstage.toml plus the environment's overrides, into one Settings."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal, cast

from cdk.settings.model import SETTINGS_FILE, BackendSettings, Settings, SettingsError
from cdk.settings.schema import check_shape
from cdk.settings.sections import (
    app_name,
    ci_install,
    env_choice,
    neon_compute,
    neon_retention,
    stage_classes,
    workers_subdomain,
)


def load_settings(root: Path, environ: dict[str, str] | None = None) -> Settings:
    """Read ``forkstage.toml`` under root (missing file = all defaults); strict about its shape.

    ``FORKSTAGE_BACKEND_KIND`` / ``_ENDPOINT`` / ``_BUCKET`` / ``_REGION`` override the backend,
    so CI can point the same project at a real bucket (or tests at their own port) without
    editing the file.
    """
    env = dict(os.environ if environ is None else environ)
    path = root / SETTINGS_FILE
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{SETTINGS_FILE} is not valid TOML: {exc}") from None
    check_shape(data)
    d = Settings(root=root)
    app = data.get("app", {})
    neon = data.get("neon", {})
    cf = data.get("cloudflare", {})
    be = data.get("backend", {})
    paths = data.get("paths", {})
    db = BackendSettings()
    kind = be.get("kind", db.kind)
    env_endpoint = env.get("FORKSTAGE_BACKEND_ENDPOINT", "")
    if env_endpoint and not env_endpoint.startswith(("http://127.0.0.1:", "https://127.0.0.1:")):
        kind = "s3"  # a CI job pointed at a real bucket
    kind = env_choice(env, "FORKSTAGE_BACKEND_KIND", ("embedded", "s3"), kind)
    endpoint = env_endpoint or be.get("endpoint", db.endpoint)
    bucket = env.get("FORKSTAGE_BACKEND_BUCKET") or be.get("bucket", db.bucket)
    if kind == "embedded" and not endpoint.startswith(("http://127.0.0.1:", "https://127.0.0.1:")):
        raise SettingsError(
            f"{SETTINGS_FILE}: the embedded backend listens on 127.0.0.1 only; "
            "set backend.endpoint to http://127.0.0.1:<port>"
        )
    backend = BackendSettings(
        kind=cast(Literal["embedded", "s3"], kind),
        endpoint=endpoint.rstrip("/"),
        bucket=bucket,
        key=be.get("key", db.key),
        region=env.get("FORKSTAGE_BACKEND_REGION") or be.get("region", db.region),
    )
    target = env_choice(
        env, "FORKSTAGE_TARGET", ("local", "cloud"), data.get("target", {}).get("kind", d.target)
    )
    return Settings(
        root=root,
        target=cast(Literal["local", "cloud"], target),
        app=app_name(app.get("name", d.app)),
        # FORKSTAGE_CDK: the runtime for one run, as cdk/runtime.py reads it
        cdk=cast(
            Literal["cdktf", "cdktn"],
            env_choice(env, "FORKSTAGE_CDK", ("cdktf", "cdktn"), app.get("cdk", d.cdk)),
        ),
        **stage_classes(data.get("stages", {}), d),
        neon_region=neon.get("region", d.neon_region),
        neon_pg_version=neon.get("pg_version", d.neon_pg_version),
        fork_from=neon.get("fork_from", d.fork_from),
        neon_org_id=env.get("NEON_ORG_ID") or neon.get("org_id", d.neon_org_id),
        neon_history_retention_seconds=neon_retention(neon),
        neon_compute=neon_compute(neon),
        cloudflare_account_id=env.get("CLOUDFLARE_ACCOUNT_ID")
        or cf.get("account_id", d.cloudflare_account_id),
        compatibility_date=cf.get("compatibility_date", d.compatibility_date),
        cloudflare_workers_subdomain=workers_subdomain(env, cf),
        hyperdrive_caching=cf.get("hyperdrive_caching", d.hyperdrive_caching),
        hyperdrive_limit=_hyperdrive_limit(cf, d.hyperdrive_limit),
        worker_dir=paths.get("worker", d.worker_dir),
        migrations_dir=paths.get("migrations", d.migrations_dir),
        backend=backend,
        ci_install=ci_install(data.get("ci", {})),
        local_suspend_after=_suspend_after(data.get("local", {}), d.local_suspend_after),
    )


def _suspend_after(local: dict[str, Any], default: int) -> int:
    """``[local] suspend_after``: seconds, 0 (never) .. a week."""
    seconds = local.get("suspend_after", default)
    if not 0 <= seconds <= 604800:
        raise SettingsError(
            f"{SETTINGS_FILE}: local.suspend_after must be 0 (never) .. 604800 seconds (e.g. 300)"
        )
    return int(seconds)


def _hyperdrive_limit(cf: dict[str, Any], default: int) -> int:
    """``[cloudflare] hyperdrive_limit``: the account's Hyperdrive cap (10 Free, 25 Paid)."""
    limit = cf.get("hyperdrive_limit", default)
    if not 1 <= limit <= 10000:
        raise SettingsError(
            f"{SETTINGS_FILE}: cloudflare.hyperdrive_limit must be 1 .. 10000 "
            "(10 on Free, 25 on Paid)"
        )
    return int(limit)
