"""What ``forkstage backend`` sub-commands share: the target backend, an admin client, health.

Kept out of the Click module so the commands stay thin: flags map onto the same
``FORKSTAGE_BACKEND_*`` overrides ``deploy`` reads, S3 failures become one-line errors, and the
state server's health endpoint (``GET /-/health``: free space, reserve, connections) is read here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cdk.settings import BackendSettings, SettingsError, load_settings
from forkstage import embedded
from forkstage.context import Project
from forkstage.errors import BadInput, Failed, ForkstageError
from forkstage.state import backend_client

HEALTH_PATH = "/-/health"


def target_of(
    project: Project,
    *,
    endpoint: str | None = None,
    bucket: str | None = None,
    key: str | None = None,
    region: str | None = None,
) -> BackendSettings:
    """The project's backend, with flags applied as the FORKSTAGE_BACKEND_* overrides are."""
    configured = project.settings.backend
    overrides = {
        name: value
        for name, value in (
            ("FORKSTAGE_BACKEND_ENDPOINT", endpoint),
            ("FORKSTAGE_BACKEND_BUCKET", bucket),
        )
        if value
    }
    if overrides:
        try:
            configured = load_settings(project.root, {**os.environ, **overrides}).backend
        except SettingsError as exc:
            raise BadInput(str(exc)) from None
    return dataclasses.replace(
        configured, key=key or configured.key, region=region or configured.region
    )


def s3_failed(exc: Exception, target: BackendSettings) -> ForkstageError:
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return BadInput(
            f"no credentials for the state backend {target.endpoint or 'AWS S3'}: set "
            "FORKSTAGE_STATE_ACCESS_KEY_ID/FORKSTAGE_STATE_SECRET_ACCESS_KEY "
            "(or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
        )
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return Failed(f"S3 said {err.get('Code')}: {err.get('Message')}")
    return Failed(f"cannot reach the state store {target.endpoint}: {exc}")


def open_admin(**flags: str | None) -> tuple[BackendSettings, Any]:
    """The target backend (started if it is the embedded one) and an admin boto3 client.

    Outside a project, given ``--endpoint``/``--bucket``: that S3 API with the caller's
    credentials (FORKSTAGE_STATE_* or AWS_*); nothing is started or written."""
    project = Project.unless_given(
        bool(flags.get("endpoint") or flags.get("bucket")), flags="--endpoint/--bucket"
    )
    if project is None:
        target = detached_target(**flags)
        return target, backend_client(target, Path.cwd())  # an s3 target never reads the home
    target = target_of(project, **flags)
    embedded.ensure_running(target, project.home)
    return target, backend_client(target, project.home)


def detached_target(
    *,
    endpoint: str | None = None,
    bucket: str | None = None,
    key: str | None = None,
    region: str | None = None,
) -> BackendSettings:
    """The S3 API named by flags alone (outside a project), defaults for the rest."""
    d = BackendSettings()
    return BackendSettings(
        kind="s3",
        endpoint=(endpoint or "").rstrip("/"),
        bucket=bucket or d.bucket,
        key=key or d.key,
        region=region or d.region,
    )


def health(endpoint: str, *, timeout: float = 5.0) -> dict[str, Any]:
    """The state server's health document; Failed when it does not answer like one."""
    url = endpoint.rstrip("/") + HEALTH_PATH
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            doc = json.loads(resp.read(64 * 1024))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise Failed(f"no forkstage state server answers at {endpoint}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("status") != "ok":
        raise Failed(f"{endpoint} did not answer like a forkstage state server")
    return doc
