"""The file's shape: every section and key it may hold, checked before any value is used."""

from __future__ import annotations

import difflib
from typing import Any

from cdk.settings.model import EMBEDDED_ENDPOINT, SETTINGS_FILE, SettingsError

# Every setting the file may hold: section -> key -> (type or allowed values, an example).
# Anything else is refused, so a typo (`fork_form`) cannot silently fall back to a default.
_Kind = type | tuple[str, ...]
SCHEMA: dict[str, dict[str, tuple[_Kind, str]]] = {
    "app": {"name": (str, '"forkstage"'), "cdk": (("cdktf", "cdktn"), "")},
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
        "hyperdrive_caching": (("on", "off"), ""),
        "hyperdrive_limit": (int, "10"),
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
    "ci": {"install": (str, '"forkstage==0.1.0"')},
    "local": {"suspend_after": (int, "300")},
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


def one_of(allowed: tuple[str, ...]) -> str:
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


def check_shape(data: dict[str, Any], *, sub: bool = False) -> None:
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
                check_shape({f"{section}.{key}": value}, sub=True)


def _check_value(where: str, value: Any, kind: _Kind, example: str) -> None:
    if isinstance(kind, tuple):
        if value not in kind:
            raise SettingsError(f"{where} must be {one_of(kind)}")
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
