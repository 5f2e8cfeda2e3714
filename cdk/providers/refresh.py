"""Refresh a schema snapshot from the real provider (``forkstage providers refresh neon``).

The snapshots are hand-checked copies of ``terraform providers schema -json``; where the registry
is reachable this replaces one with the real thing, cut down to the types pinned in pins.py so
the diff stays reviewable. Offline it fails with one line and changes nothing.

The caller brings the engine (a ``Terraform`` callable whose configuration installs providers
with ``DIRECT_INSTALLATION``): cdk/ knows the schema, not how Terraform is run.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from cdk.providers.pins import ProviderPin
from cdk.providers.schema import dump_snapshot, parse, snapshot_path

DIRECT_INSTALLATION = "provider_installation {\n  direct {}\n}\n"


class RefreshError(RuntimeError):
    """Refreshing failed; the message is one line meant for the user."""


class Terraform(Protocol):
    """Runs the Terraform engine with ``args`` in ``cwd`` and returns its captured output."""

    def __call__(
        self, args: Sequence[str], *, cwd: Path, timeout: float
    ) -> subprocess.CompletedProcess[str]: ...


def filter_schema(doc: dict[str, Any], pin: ProviderPin) -> dict[str, Any]:
    """Keep only the pinned provider and the resource/data source types forkstage uses."""
    try:
        full = doc["provider_schemas"][pin.fqn]
    except KeyError as exc:
        raise RefreshError(f"the schema output has no provider {pin.fqn}") from exc
    picked: dict[str, Any] = {"provider": full["provider"]}
    for key, wanted in (
        ("resource_schemas", pin.resources),
        ("data_source_schemas", pin.data_sources),
    ):
        have = full.get(key, {})
        missing = [t for t in wanted if t not in have]
        if missing:
            raise RefreshError(
                f"{pin.source} {pin.version} has no {key[:-8].replace('_', ' ')} "
                f"{', '.join(missing)}: fix the list in cdk/providers/pins.py"
            )
        picked[key] = {t: have[t] for t in wanted}
    out = {
        "format_version": doc.get("format_version", "1.0"),
        "provider_schemas": {pin.fqn: picked},
    }
    parse(out, pin)  # refuse to write something codegen cannot read
    return out


def _first_error(text: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("│╷╵ ").strip()
        if line.startswith("Error:"):
            return line
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def fetch_schema(pin: ProviderPin, terraform: Terraform) -> dict[str, Any]:
    """Run ``terraform init`` + ``providers schema -json`` for just this provider."""
    with tempfile.TemporaryDirectory(prefix=f"forkstage-refresh-{pin.name}-") as tmp:
        work = Path(tmp)
        config = {
            "terraform": {
                "required_providers": {pin.name: {"source": pin.address, "version": pin.version}}
            }
        }
        (work / "main.tf.json").write_text(json.dumps(config, indent=2))
        init = terraform(
            ["init", "-input=false", "-no-color", "-backend=false"], cwd=work, timeout=600
        )
        if init.returncode != 0:
            raise RefreshError(
                f"terraform init could not install {pin.source} {pin.version} "
                f"({_first_error(init.stderr + init.stdout)}); this needs access to "
                f"{pin.hostname}"
            )
        shown = terraform(["providers", "schema", "-json"], cwd=work, timeout=300)
        if shown.returncode != 0:
            raise RefreshError(f"terraform providers schema failed: {_first_error(shown.stderr)}")
        result: dict[str, Any] = json.loads(shown.stdout)
        return result


def refresh(pin: ProviderPin, terraform: Terraform, out: Path | None = None) -> Path:
    """Write the pinned part of the provider's real schema to ``out`` (its snapshot by default)."""
    doc = filter_schema(fetch_schema(pin, terraform), pin)
    path = out or snapshot_path(pin)
    path.write_text(dump_snapshot(doc))
    return path
