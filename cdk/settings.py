"""Project settings, read from one file (``forkstage.toml`` at the project root).

Everything a stage's Terraform config depends on, besides the stage name, comes from here, so
`python main.py`, `npx cdktf synth` and `forkstage synth` all agree.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from cdk.stage import Stage, StageClasses, StageError, validate_stage_name

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
    personal: tuple[str, ...] = ("dev_*",)
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
    },
    "cloudflare": {"account_id": (str, '""'), "compatibility_date": (str, '"2025-09-01"')},
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
_TYPE_NAMES = {str: "a string", int: "an integer", list: "a list of strings"}


def _one_of(allowed: tuple[str, ...]) -> str:
    return "one of " + ", ".join(f'"{v}"' for v in allowed)


def _suggest(section: str | None, key: str) -> str:
    """``; did you mean neon.fork_from?`` (closest key, else the same key in another section)."""
    if section is None:
        close = difflib.get_close_matches(key, list(SCHEMA), n=1)
        hint = f"; did you mean [{close[0]}]?" if close else ""
        return f"{hint} (sections: {', '.join(SCHEMA)})"
    keys = list(SCHEMA[section])
    close = difflib.get_close_matches(key, keys, n=1)
    if close:
        return f"; did you mean {section}.{close[0]}?"
    elsewhere = [s for s, table in SCHEMA.items() if key in table]
    if elsewhere:
        return f"; did you mean {elsewhere[0]}.{key}?"
    return f" ({section} takes {', '.join(keys)})"


def _check_shape(data: dict[str, Any]) -> None:
    """Unknown sections and keys, and values of the wrong type or outside their allowed set."""
    for section, table in data.items():
        if section not in SCHEMA:
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


def _check_value(where: str, value: Any, kind: _Kind, example: str) -> None:
    if isinstance(kind, tuple):
        if value not in kind:
            raise SettingsError(f"{where} must be {_one_of(kind)}")
        return
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
        cloudflare_account_id=env.get("CLOUDFLARE_ACCOUNT_ID")
        or cf.get("account_id", d.cloudflare_account_id),
        compatibility_date=cf.get("compatibility_date", d.compatibility_date),
        worker_dir=paths.get("worker", d.worker_dir),
        migrations_dir=paths.get("migrations", d.migrations_dir),
        backend=backend,
    )
