"""Local Cloudflare account state: Hyperdrive configs, Worker scripts and whether each script is
on workers.dev, for the stand-in.

Only what running a script's Worker (Miniflare/workerd, ``localcloud.live_workers``) needs is
kept: each Hyperdrive's origin (password included: state.json is mode 0600, as Terraform's own
state holds it too), each Worker's code, main module, compatibility settings and bindings. Code
goes to ``scripts/<account>/<script>/<main module>`` so a runtime can load it as is.

State lives under ``$FORKSTAGE_HOME/local/cloudflare/`` and is changed under a file lock, since
the stand-in provider runs in processes Terraform starts and stops.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cdk.connection import postgres_url
from localcloud.store import JsonStore


class CloudflareError(RuntimeError):
    """An API error of the local account (message safe to show: no secrets)."""

    status = 400


class NotFound(CloudflareError):
    status = 404


_OFF = {"enabled": False, "previews_enabled": False}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _compact(value: Any) -> Any:
    """Without the nulls of every unset optional attribute (bindings have thirty)."""
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


def safe_name(part: str) -> str:
    """A path segment from an account id or script name (both user input)."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in part).lstrip(".")
    return cleaned or "_"


def _decode(raw: dict[str, Any]) -> dict[str, Any]:
    raw.setdefault("hyperdrive", {})
    raw.setdefault("workers", {})
    return raw


class Account:
    """The local stand-in for every Cloudflare account forkstage deploys to."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.root = self.home / "local" / "cloudflare"
        self.store: JsonStore[dict[str, Any]] = JsonStore(
            self.root / "state.json", decode=_decode, encode=dict
        )

    @property
    def state_file(self) -> Path:
        return self.store.path

    # -- Hyperdrive ------------------------------------------------------------------------------
    def put_hyperdrive(
        self, account_id: str, config: dict[str, Any], hyperdrive_id: str | None = None
    ) -> dict[str, Any]:
        """Create (no id) or replace a Hyperdrive config; ids are 32 hex digits, as Cloudflare's."""
        with self.store.change() as state:
            now = _now()
            if hyperdrive_id is None:
                hyperdrive_id = secrets.token_hex(16)
                created = now
            else:
                created = self._hyperdrive(state, account_id, hyperdrive_id)["created_on"]
            record = {
                **_compact(config),
                "id": hyperdrive_id,
                "account_id": account_id,
                "created_on": created,
                "modified_on": now,
            }
            state["hyperdrive"][hyperdrive_id] = record
            return dict(record)

    def get_hyperdrive(self, account_id: str, hyperdrive_id: str) -> dict[str, Any]:
        with self.store.read() as state:
            return dict(self._hyperdrive(state, account_id, hyperdrive_id))

    def delete_hyperdrive(self, account_id: str, hyperdrive_id: str) -> None:
        with self.store.change() as state:
            self._hyperdrive(state, account_id, hyperdrive_id)
            del state["hyperdrive"][hyperdrive_id]

    def _hyperdrive(self, state: dict[str, Any], account_id: str, hyperdrive_id: str) -> Any:
        record = state["hyperdrive"].get(hyperdrive_id)
        if record is None or record["account_id"] != account_id:
            raise NotFound(f"Hyperdrive config {hyperdrive_id} not found")
        return record

    def hyperdrive_local_url(self, hyperdrive_id: str) -> str:
        """The origin as a libpq URL reachable from this machine (Miniflare's
        ``localConnectionString``): a local Neon endpoint host becomes ``127.0.0.1:<port>``."""
        with self.store.read() as state:
            record = state["hyperdrive"].get(hyperdrive_id)
            if record is None:
                raise NotFound(f"Hyperdrive config {hyperdrive_id} not found")
            origin = dict(record["origin"])
        host, port = origin["host"], origin.get("port") or 5432
        from localcloud.neon import HOST_SUFFIX, ControlPlane

        if host.endswith(HOST_SUFFIX):
            host, port = ControlPlane(self.home).resolve_host(host)
        return postgres_url(
            host=host,
            port=port,
            database=origin["database"],
            user=origin["user"],
            password=origin["password"],
        )

    # -- Workers ---------------------------------------------------------------------------------
    def script_dir(self, account_id: str, script_name: str) -> Path:
        return self.root / "scripts" / safe_name(account_id) / safe_name(script_name)

    def put_script(
        self, account_id: str, script_name: str, *, content: str, settings: dict[str, Any]
    ) -> dict[str, Any]:
        """Upload (create or replace) a Worker; Hyperdrive bindings must name existing configs."""
        with self.store.change() as state:
            for binding in settings.get("bindings") or []:
                if binding.get("type") == "hyperdrive":
                    self._hyperdrive(state, account_id, binding.get("id") or "")
            key = f"{account_id}/{script_name}"
            previous = state["workers"].get(key)
            main_module = settings.get("main_module") or "worker.js"
            folder = self.script_dir(account_id, script_name)
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            (folder / safe_name(main_module)).write_text(content)
            now = _now()
            record = {
                **_compact(settings),
                "account_id": account_id,
                "script_name": script_name,
                "main_module": main_module,
                "path": str(folder / safe_name(main_module)),
                "etag": hashlib.sha256(content.encode()).hexdigest(),
                "created_on": previous["created_on"] if previous else now,
                "modified_on": now,
                # an upload keeps the script's workers.dev setting; a new script starts off it
                "subdomain": previous.get("subdomain", _OFF) if previous else dict(_OFF),
            }
            state["workers"][key] = record
            return dict(record)

    def get_script(self, account_id: str, script_name: str) -> dict[str, Any]:
        with self.store.read() as state:
            record = state["workers"].get(f"{account_id}/{script_name}")
            if record is None:
                raise NotFound(f"Worker {script_name} not found")
            return dict(record)

    def delete_script(self, account_id: str, script_name: str) -> None:
        with self.store.change() as state:
            if state["workers"].pop(f"{account_id}/{script_name}", None) is None:
                raise NotFound(f"Worker {script_name} not found")
            shutil.rmtree(self.script_dir(account_id, script_name), ignore_errors=True)

    def set_subdomain(
        self, account_id: str, script_name: str, *, enabled: bool, previews_enabled: bool | None
    ) -> dict[str, bool]:
        """POST ``.../workers/scripts/{name}/subdomain``: workers.dev on or off for a script (404
        for a script that does not exist). Unset ``previews_enabled`` follows ``enabled``."""
        with self.store.change() as state:
            record = state["workers"].get(f"{account_id}/{script_name}")
            if record is None:
                raise NotFound(f"Worker {script_name} not found")
            previews = enabled if previews_enabled is None else previews_enabled
            record["subdomain"] = {"enabled": enabled, "previews_enabled": previews}
            return dict(record["subdomain"])

    def get_subdomain(self, account_id: str, script_name: str) -> dict[str, bool]:
        """GET ``.../workers/scripts/{name}/subdomain``."""
        return dict(self.get_script(account_id, script_name).get("subdomain", _OFF))

    def scripts(self) -> list[dict[str, Any]]:
        with self.store.read() as state:
            return [dict(r) for r in state["workers"].values()]
