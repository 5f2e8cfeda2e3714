"""One reader per section whose values need more than a type check (ranges, names, env)."""

from __future__ import annotations

import difflib
import re
from typing import Any

from cdk.settings.model import (
    FREE_PLAN_RETENTION,
    PLACEHOLDER_WORKERS_SUBDOMAIN,
    SETTINGS_FILE,
    NeonCompute,
    Settings,
    SettingsError,
)
from cdk.settings.schema import SCHEMA, one_of
from cdk.stage import StageError, validate_stage_name


def stage_classes(stages: dict[str, Any], d: Settings) -> dict[str, Any]:
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
    owner, long_lived = values["owner_stage"], values["long_lived"]
    if owner not in long_lived:
        close = difflib.get_close_matches(owner, long_lived, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SettingsError(
            f"{SETTINGS_FILE}: stages.owner {owner!r} is not in stages.long_lived "
            f"({', '.join(long_lived) or 'empty'}){hint} (the owner stage is long-lived: "
            "list it there)"
        )
    for key in ("referencing", "personal"):
        if any(not p.strip() for p in values[key]):
            raise SettingsError(
                f"{SETTINGS_FILE}: stages.{key} holds an empty pattern: use e.g. "
                f"{SCHEMA['stages'][key][1]}"
            )
    return values


def neon_compute(neon: dict[str, Any]) -> NeonCompute:
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


def neon_retention(neon: dict[str, Any]) -> int:
    value = int(neon.get("history_retention_seconds", FREE_PLAN_RETENTION))
    if not 0 <= value <= 2592000:
        raise SettingsError(
            f"{SETTINGS_FILE}: neon.history_retention_seconds must be 0..2592000 "
            f"(Neon's Free plan allows at most {FREE_PLAN_RETENTION})"
        )
    return value


def workers_subdomain(env: dict[str, str], cf: dict[str, Any]) -> str:
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


def env_choice(env: dict[str, str], name: str, allowed: tuple[str, ...], fallback: str) -> str:
    value = env.get(name) or fallback
    if value not in allowed:
        raise SettingsError(f"{name} must be {one_of(allowed)}")
    return value


# Physical names are <app>-<construct id>-<stage> (at most 63 characters: Cloudflare script and
# Hyperdrive names, Neon project and branch names): the app part must already be valid there.
APP_NAME = re.compile(r"[a-z](?:[a-z0-9-]{0,28}[a-z0-9])?")
APP_NAME_RULE = (
    "lowercase letters, digits and hyphens, starting with a letter, not ending with a hyphen, "
    "at most 30 characters (Neon and Cloudflare names are <name>-<construct>-<stage>)"
)


def app_name(value: str) -> str:
    """``app.name``, checked at load: renaming it renames every stage's live resources."""
    if not APP_NAME.fullmatch(value) or "--" in value:
        raise SettingsError(f"{SETTINGS_FILE}: app.name {value!r} must be {APP_NAME_RULE}")
    return value


# A pip requirement: a version, a wheel/folder path, or a pinned VCS URL; it lands in YAML and
# shell, so only characters those need.
_INSTALL = re.compile(r"[A-Za-z0-9._/:@+=<>!~,\[\]# -]{1,300}")


def valid_install(value: str) -> bool:
    """Whether ``value`` is one pip requirement forkstage puts into a pipeline."""
    return bool(_INSTALL.fullmatch(value)) and not value.startswith("-")


def ci_install(ci: dict[str, Any]) -> str:
    value = str(ci.get("install", "")).strip()
    if value and not valid_install(value):
        raise SettingsError(
            f"{SETTINGS_FILE}: ci.install {value!r} must be one pip requirement: a version "
            "(forkstage==0.1.0), a path (., dist/forkstage-0.1.0-py3-none-any.whl) or a pinned "
            "VCS URL (forkstage @ git+https://host/org/forkstage@<commit>)"
        )
    return value
