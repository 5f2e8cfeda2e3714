"""Project settings, read from one file (``forkstage.toml`` at the project root).

Everything a stage's Terraform config depends on, besides the stage name, comes from here, so
`python main.py`, `npx cdktf synth` and `forkstage synth` all agree. One module per concern:
``model`` (the dataclasses), ``schema`` (the file's allowed shape), ``sections`` (values checked
beyond their type), ``load`` (file + environment -> Settings).
"""

from cdk.settings.load import load_settings
from cdk.settings.model import (
    EMBEDDED_ENDPOINT,
    FREE_PLAN_RETENTION,
    PLACEHOLDER_WORKERS_SUBDOMAIN,
    REFERENCING_COMPUTE,
    SETTINGS_FILE,
    BackendSettings,
    NeonCompute,
    Settings,
    SettingsError,
)
from cdk.settings.schema import SCHEMA

__all__ = [
    "EMBEDDED_ENDPOINT",
    "FREE_PLAN_RETENTION",
    "PLACEHOLDER_WORKERS_SUBDOMAIN",
    "REFERENCING_COMPUTE",
    "SCHEMA",
    "SETTINGS_FILE",
    "BackendSettings",
    "NeonCompute",
    "Settings",
    "SettingsError",
    "load_settings",
]
