"""The settings model: what one app's ``forkstage.toml`` resolves to (defaults included)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cdk.stage import Stage, StageClasses, StageError

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
REFERENCING_COMPUTE = {"min_cu": 0.25, "max_cu": 0.25}
# Hyperdrive configurations per Cloudflare account on the Free plan (25 on Paid); one per preview.
HYPERDRIVE_LIMIT = 10


@dataclass(frozen=True)
class NeonCompute:
    """``[neon.compute]``: what a stage's endpoint asks for; None leaves Neon's default."""

    min_cu: float | None = None
    max_cu: float | None = None
    suspend_timeout_seconds: int | None = None

    def for_stage(self, referencing: bool) -> NeonCompute:
        """Referencing stages fill the cheap CU defaults; owner stages keep only what is set.
        ``suspend_timeout_seconds`` is sent only when set: changing it is a paid-plan feature."""
        if not referencing:
            return self
        d = REFERENCING_COMPUTE
        return NeonCompute(
            min_cu=d["min_cu"] if self.min_cu is None else self.min_cu,
            max_cu=d["max_cu"] if self.max_cu is None else self.max_cu,
            suspend_timeout_seconds=self.suspend_timeout_seconds,
        )


@dataclass(frozen=True)
class Settings:
    """One app's settings; defaults make a fresh project work on the embedded backend."""

    root: Path
    app: str = "forkstage"
    cdk: Literal["cdktf", "cdktn"] = "cdktf"  # the CDK runtime (read by cdk/runtime.py)
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
    # [cloudflare] hyperdrive_caching: "on"/"off"; "" = off for referencing stages (a preview
    # reads its own writes), Cloudflare's default (on: 60 s max age) for the others
    hyperdrive_caching: Literal["", "on", "off"] = ""
    # [cloudflare] hyperdrive_limit: the account's Hyperdrive cap, checked before a preview's
    # first deploy (10 on Free, 25 on Paid)
    hyperdrive_limit: int = HYPERDRIVE_LIMIT
    worker_dir: str = "worker"
    migrations_dir: str = "migrations"
    target: Literal["local", "cloud"] = "local"
    backend: BackendSettings = field(default_factory=BackendSettings)
    # [ci] install: the pip requirement rendered pipelines install forkstage from ("" = unset)
    ci_install: str = ""
    # [local] suspend_after: seconds an idle local endpoint keeps running (0: never suspended)
    local_suspend_after: int = 300

    def hyperdrive_caching_disabled(self, referencing: bool) -> bool | None:
        """``caching.disabled`` for a stage's Hyperdrive; None leaves Cloudflare's default."""
        if self.hyperdrive_caching:
            return self.hyperdrive_caching == "off"
        return True if referencing else None

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
        """The stage ``name`` of this project; StageError if invalid or in no stage class (with
        "did you mean" when it is one edit away from a long-lived stage: `stagin`)."""
        try:
            return self.stage_classes.parse(name)
        except StageError as exc:
            close = [n for n in self.stage_classes.long_lived_names if one_edit(name, n)]
            if close:
                raise StageError(f"{exc}; did you mean {close[0]}?") from None
            raise


def one_edit(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` differ by one insertion, deletion, substitution or swap of two
    neighbouring characters (``stagin``, ``stagign``, ``prd``)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) == len(b) and a[i + 2 :] == b[i + 2 :] and a[i : i + 2] == b[i : i + 2][::-1]:
        return True
    return a[i + (len(a) == len(b)) :] == b[i + 1 :]
