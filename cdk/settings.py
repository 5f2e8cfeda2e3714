"""Project settings, read from one file (``forkstage.toml`` at the project root).

Everything a stage's Terraform config depends on, besides the stage name, comes from here, so
`python main.py`, `npx cdktf synth` and `forkstage synth` all agree.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from cdk.stage import Stage, StageClasses, StageError, validate_stage_name

SETTINGS_FILE = "forkstage.toml"
EMBEDDED_ENDPOINT = "http://127.0.0.1:4599"
# workers.dev subdomain until [cloudflare] workers_subdomain / CLOUDFLARE_WORKERS_SUBDOMAIN is set
PLACEHOLDER_WORKERS_SUBDOMAIN = "your-subdomain"


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


# Neon's Free plan caps history retention at 21600 s; the provider's own default (86400) is refused
# there (kislerdm/neon provider/resource_project.go; provider issue #176).
FREE_PLAN_RETENTION = 21600
# Cheap compute for referencing stages' endpoints unless [neon.compute] says otherwise.
REFERENCING_COMPUTE = {"min_cu": 0.25, "max_cu": 0.25, "suspend_timeout_seconds": 300}


@dataclass(frozen=True)
class NeonCompute:
    """``[neon.compute]``: what a stage's endpoint asks for; None leaves Neon's default."""

    min_cu: float | None = None
    max_cu: float | None = None
    suspend_timeout_seconds: int | None = None

    def for_stage(self, referencing: bool) -> NeonCompute:
        """Referencing stages fill the cheap defaults; owner stages keep only what is set."""
        if not referencing:
            return self
        d = REFERENCING_COMPUTE
        return NeonCompute(
            min_cu=d["min_cu"] if self.min_cu is None else self.min_cu,
            max_cu=d["max_cu"] if self.max_cu is None else self.max_cu,
            suspend_timeout_seconds=int(d["suspend_timeout_seconds"])
            if self.suspend_timeout_seconds is None
            else self.suspend_timeout_seconds,
        )


@dataclass(frozen=True)
class Settings:
    """One app's settings; defaults make a fresh project work on the embedded backend."""

    root: Path
    app: str = "forkstage"
    owner_stage: str = "staging"
    referencing: tuple[str, ...] = ("pr-*",)
    long_lived: tuple[str, ...] = ("staging", "prod")
    personal: tuple[str, ...] = ("dev_*",)
    protected: tuple[str, ...] = ("prod",)
    neon_region: str = "aws-us-east-1"
    neon_pg_version: int = 16
    fork_from: Literal["default", "owner-branch"] = "default"
    neon_org_id: str = ""
    neon_history_retention_seconds: int = FREE_PLAN_RETENTION
    neon_compute: NeonCompute = field(default_factory=NeonCompute)
    cloudflare_account_id: str = ""
    compatibility_date: str = "2025-09-01"
    cloudflare_workers_subdomain: str = PLACEHOLDER_WORKERS_SUBDOMAIN
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

    @property
    def stage_classes(self) -> StageClasses:
        """``[stages]``: which names are stages of this project, and of which kind."""
        return StageClasses(
            owner=self.owner_stage,
            long_lived=self.long_lived,
            referencing=self.referencing,
            personal=self.personal,
        )

    def parse_stage(self, name: str) -> Stage:
        """The stage ``name`` of this project; StageError if invalid or in no stage class."""
        return self.stage_classes.parse(name)


# Every setting the file may hold: section -> key -> (type or allowed values, an example).
# Anything else is refused, so a typo (`fork_form`) cannot silently fall back to a default.
_Kind = type | tuple[str, ...]
SCHEMA: dict[str, dict[str, tuple[_Kind, str]]] = {
    "app": {"name": (str, '"forkstage"')},
    "stages": {
        "owner": (str, '"staging"'),
        "long_lived": (list, '["staging", "prod"]'),
        "referencing": (list, '["pr-*"]'),
        "personal": (list, '["dev_*"]'),
        "protected": (list, '["prod"]'),
    },
    "neon": {
        "region": (str, '"aws-us-east-1"'),
        "pg_version": (int, "16"),
        "fork_from": (("default", "owner-branch"), ""),
        "org_id": (str, '"org-cool-sky-12345678"'),
        "history_retention_seconds": (int, "21600"),
        "compute": (dict, "[neon.compute]"),
    },
    "neon.compute": {
        "min_cu": (float, "0.25"),
        "max_cu": (float, "0.25"),
        "suspend_timeout_seconds": (int, "300"),
    },
    "cloudflare": {
        "account_id": (str, '""'),
        "compatibility_date": (str, '"2025-09-01"'),
        "workers_subdomain": (str, '"my-team"'),
    },
    "backend": {
        "kind": (("embedded", "s3"), ""),
        "endpoint": (str, f'"{EMBEDDED_ENDPOINT}"'),
        "bucket": (str, '"forkstage-state"'),
        "key": (str, '"forkstage/terraform.tfstate"'),
        "region": (str, '"us-east-1"'),
    },
    "target": {"kind": (("local", "cloud"), "")},
    "paths": {"migrations": (str, '"migrations"'), "worker": (str, '"worker"')},
}
# Top-level sections; "neon.compute" is a sub-section, written [neon.compute].
_SECTIONS = [s for s in SCHEMA if "." not in s]
_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    list: "a list of strings",
    dict: "a section",
}


def _one_of(allowed: tuple[str, ...]) -> str:
    return "one of " + ", ".join(f'"{v}"' for v in allowed)


def _suggest(section: str | None, key: str) -> str:
    """``; did you mean neon.fork_from?`` (closest key, else the same key in another section)."""
    if section is None:
        close = difflib.get_close_matches(key, _SECTIONS, n=1)
        hint = f"; did you mean [{close[0]}]?" if close else ""
        return f"{hint} (sections: {', '.join(_SECTIONS)})"
    keys = list(SCHEMA[section])
    close = difflib.get_close_matches(key, keys, n=1)
    if close:
        return f"; did you mean {section}.{close[0]}?"
    elsewhere = [s for s, table in SCHEMA.items() if key in table]
    if elsewhere:
        return f"; did you mean {elsewhere[0]}.{key}?"
    return f" ({section} takes {', '.join(keys)})"


def _check_shape(data: dict[str, Any], *, sub: bool = False) -> None:
    """Unknown sections and keys, and values of the wrong type or outside their allowed set."""
    for section, table in data.items():
        if section not in (SCHEMA if sub else _SECTIONS):
            what = f"section [{section}]" if isinstance(table, dict) else f"setting {section}"
            raise SettingsError(f"{SETTINGS_FILE}: unknown {what}{_suggest(None, section)}")
        if not isinstance(table, dict):
            raise SettingsError(
                f"{SETTINGS_FILE}: {section} must be a section ([{section}]), not a value"
            )
        for key, value in table.items():
            if key not in SCHEMA[section]:
                raise SettingsError(
                    f"{SETTINGS_FILE}: unknown setting {section}.{key}{_suggest(section, key)}"
                )
            _check_value(f"{SETTINGS_FILE}: {section}.{key}", value, *SCHEMA[section][key])
            if isinstance(value, dict):  # a sub-section such as [neon.compute]
                _check_shape({f"{section}.{key}": value}, sub=True)


def _check_value(where: str, value: Any, kind: _Kind, example: str) -> None:
    if isinstance(kind, tuple):
        if value not in kind:
            raise SettingsError(f"{where} must be {_one_of(kind)}")
        return
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return  # 1 is a number of compute units as much as 1.0
    ok = (
        all(isinstance(v, str) for v in value)
        if kind is list and isinstance(value, list)
        else isinstance(value, kind) and not isinstance(value, bool)
    )
    if not ok:
        raise SettingsError(f"{where} must be {_TYPE_NAMES[kind]} (e.g. {example})")


def _stage_classes(stages: dict[str, Any], d: Settings) -> dict[str, Any]:
    """``[stages]`` with its names checked: a bad long-lived name would fail every synth."""
    values: dict[str, Any] = {
        "owner_stage": stages.get("owner", d.owner_stage),
        "long_lived": tuple(stages.get("long_lived", d.long_lived)),
        "referencing": tuple(stages.get("referencing", d.referencing)),
        "personal": tuple(stages.get("personal", d.personal)),
        "protected": tuple(stages.get("protected", d.protected)),
    }
    named = [("stages.owner", values["owner_stage"])]
    named += [("stages.long_lived", n) for n in values["long_lived"]]
    for where, name in named:
        try:
            validate_stage_name(name)
        except StageError as exc:
            raise SettingsError(f"{SETTINGS_FILE}: {where}: {exc}") from None
    for key in ("referencing", "personal"):
        if any(not p.strip() for p in values[key]):
            raise SettingsError(
                f"{SETTINGS_FILE}: stages.{key} holds an empty pattern: use e.g. "
                f"{SCHEMA['stages'][key][1]}"
            )
    return values


def _neon_compute(neon: dict[str, Any]) -> NeonCompute:
    """``[neon.compute]``, checked against Neon's ranges (0.25..56 CU, min <= max)."""
    table = neon.get("compute", {})
    where = f"{SETTINGS_FILE}: neon.compute"
    compute = NeonCompute(
        min_cu=table.get("min_cu"),
        max_cu=table.get("max_cu"),
        suspend_timeout_seconds=table.get("suspend_timeout_seconds"),
    )
    for key in ("min_cu", "max_cu"):
        cu = getattr(compute, key)
        if cu is not None and not 0.25 <= cu <= 56:
            raise SettingsError(f"{where}.{key} must be between 0.25 and 56 (compute units)")
    low, high = compute.for_stage(True).min_cu, compute.for_stage(True).max_cu
    if low is not None and high is not None and low > high:
        raise SettingsError(f"{where}: min_cu ({low}) is above max_cu ({high})")
    timeout = compute.suspend_timeout_seconds
    if timeout is not None and not -1 <= timeout <= 604800:
        raise SettingsError(
            f"{where}.suspend_timeout_seconds must be -1 (never) .. 604800 (e.g. 300)"
        )
    return compute


def _neon_retention(neon: dict[str, Any]) -> int:
    value = int(neon.get("history_retention_seconds", FREE_PLAN_RETENTION))
    if not 0 <= value <= 2592000:
        raise SettingsError(
            f"{SETTINGS_FILE}: neon.history_retention_seconds must be 0..2592000 "
            f"(Neon's Free plan allows at most {FREE_PLAN_RETENTION})"
        )
    return value


def _workers_subdomain(env: dict[str, str], cf: dict[str, Any]) -> str:
    """The account's workers.dev subdomain (``<it>.workers.dev``): no provider resource or data
    source exposes it (cloudflare/cloudflare v5.14.0), so it is a setting; the placeholder until
    set (the local cloud takes any value)."""
    value = env.get("CLOUDFLARE_WORKERS_SUBDOMAIN") or cf.get("workers_subdomain", "")
    value = value or PLACEHOLDER_WORKERS_SUBDOMAIN
    if not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", value):
        raise SettingsError(
            f"cloudflare.workers_subdomain (or CLOUDFLARE_WORKERS_SUBDOMAIN) must be the account's "
            f"workers.dev subdomain alone, one lower-case DNS label such as my-team (got {value!r})"
        )
    return value


def _env_choice(env: dict[str, str], name: str, allowed: tuple[str, ...], fallback: str) -> str:
    value = env.get(name) or fallback
    if value not in allowed:
        raise SettingsError(f"{name} must be {_one_of(allowed)}")
    return value


def load_settings(root: Path, environ: dict[str, str] | None = None) -> Settings:
    """Read ``forkstage.toml`` under root (missing file = all defaults); strict about its shape.

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
    _check_shape(data)
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
    kind = _env_choice(env, "FORKSTAGE_BACKEND_KIND", ("embedded", "s3"), kind)
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
        region=be.get("region", db.region),
    )
    target = _env_choice(
        env, "FORKSTAGE_TARGET", ("local", "cloud"), data.get("target", {}).get("kind", d.target)
    )
    return Settings(
        root=root,
        target=cast(Literal["local", "cloud"], target),
        app=app.get("name", d.app),
        **_stage_classes(data.get("stages", {}), d),
        neon_region=neon.get("region", d.neon_region),
        neon_pg_version=neon.get("pg_version", d.neon_pg_version),
        fork_from=neon.get("fork_from", d.fork_from),
        neon_org_id=env.get("NEON_ORG_ID") or neon.get("org_id", d.neon_org_id),
        neon_history_retention_seconds=_neon_retention(neon),
        neon_compute=_neon_compute(neon),
        cloudflare_account_id=env.get("CLOUDFLARE_ACCOUNT_ID")
        or cf.get("account_id", d.cloudflare_account_id),
        compatibility_date=cf.get("compatibility_date", d.compatibility_date),
        cloudflare_workers_subdomain=_workers_subdomain(env, cf),
        worker_dir=paths.get("worker", d.worker_dir),
        migrations_dir=paths.get("migrations", d.migrations_dir),
        backend=backend,
    )
