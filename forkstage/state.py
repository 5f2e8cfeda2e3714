"""Read stages' states and locks from the S3 backend (embedded server, S3 or R2) with boto3.

Guards and reports read state here, before Terraform runs: it is faster than the engine and
works the same against any S3 API.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from cdk.settings import BackendSettings
from forkstage import embedded
from forkstage.errors import Failed

WORKSPACE_PREFIX = "env:/"
LOCK_SUFFIX = ".tflock"
# Reads in flight at once when many stages are read (``stages``, ``prune``): a few round trips'
# worth of time on real S3, and well inside the embedded server's connection limit.
DEFAULT_CONCURRENCY = 16

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class StageState:
    """One workspace's state as stored in the backend."""

    stage: str
    serial: int
    resources: int
    outputs: dict[str, Any]
    last_modified: datetime | None
    lineage: str
    etag: str = ""  # of the object read (to tell whether a listing shows it changed since)

    def public_outputs(self) -> dict[str, Any]:
        """Outputs not marked sensitive (the only ones forkstage ever prints)."""
        return {k: v.get("value") for k, v in self.outputs.items() if not v.get("sensitive")}


@dataclass(frozen=True)
class StageEntry:
    """One workspace as the bucket listing shows it, before any object is read."""

    stage: str
    size: int
    last_modified: datetime | None
    locked: bool
    etag: str = ""


def state_key(backend: BackendSettings, stage: str) -> str:
    return f"{WORKSPACE_PREFIX}{stage}/{backend.key}"


def admin_env(backend: BackendSettings, home: Path) -> dict[str, str]:
    """AWS credentials for reading every stage: the embedded admin key, or the caller's."""
    if backend.embedded:
        from backend.s3.credentials import ensure_admin

        cred = ensure_admin(embedded.data_dir(home))
        return {
            "AWS_ACCESS_KEY_ID": cred.access_key_id,
            "AWS_SECRET_ACCESS_KEY": cred.secret_access_key,
        }
    env = {
        k: os.environ[k]
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")
        if k in os.environ
    }
    # CI pipelines pass the state bucket's key under its own name, apart from other AWS keys.
    if os.environ.get("FORKSTAGE_STATE_ACCESS_KEY_ID"):
        env["AWS_ACCESS_KEY_ID"] = os.environ["FORKSTAGE_STATE_ACCESS_KEY_ID"]
        env["AWS_SECRET_ACCESS_KEY"] = os.environ.get("FORKSTAGE_STATE_SECRET_ACCESS_KEY", "")
    return env


def stage_env(
    backend: BackendSettings, home: Path, stage: str, reads: tuple[str, ...]
) -> dict[str, str]:
    """Credentials one stage's Terraform run gets: on the embedded server, scoped to the stage
    (read/write its own workspace, outputs-only reads of ``reads``)."""
    if not backend.embedded:
        return admin_env(backend, home)
    from backend.s3.credentials import issue

    cred = issue(embedded.data_dir(home), policy="stage", stage=stage, read_outputs=reads)
    return {
        "AWS_ACCESS_KEY_ID": cred.access_key_id,
        "AWS_SECRET_ACCESS_KEY": cred.secret_access_key,
    }


def backend_client(backend: BackendSettings, home: Path, *, pool: int = DEFAULT_CONCURRENCY) -> Any:
    """A boto3 S3 client for the backend bucket with ``admin_env``'s credentials.

    The one way the wrapper reaches its state: guards, reports and ``forkstage backend
    versions|rollback`` all see the endpoint, bucket and key that ``deploy`` uses.
    """
    import boto3
    from botocore.config import Config

    creds = admin_env(backend, home)
    return boto3.client(
        "s3",
        endpoint_url=backend.endpoint or None,
        region_name=backend.region,
        aws_access_key_id=creds.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=creds.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=creds.get("AWS_SESSION_TOKEN"),
        config=Config(
            # path style for the embedded server, R2 and other S3 APIs; AWS picks its own
            s3={"addressing_style": "path"} if backend.endpoint else {},
            retries={"max_attempts": 2},
            max_pool_connections=max(pool, 1),
            connect_timeout=5,
            read_timeout=30,
        ),
    )


def _reading_client(backend: BackendSettings, home: Path, *, pool: int) -> Any:
    """The client the views read with: with an endpoint and an explicit key (embedded, R2,
    another S3 API) the two reads signed here (``forkstage.s3lite``: no boto3 start-up, less
    CPU per request); else boto3 with the caller's credential chain (profiles, roles)."""
    if backend.endpoint:
        creds = admin_env(backend, home)
        if creds.get("AWS_ACCESS_KEY_ID") and creds.get("AWS_SECRET_ACCESS_KEY"):
            from forkstage.s3lite import Credentials, S3Lite

            return S3Lite(
                endpoint=backend.endpoint,
                region=backend.region,
                credentials=Credentials(
                    creds["AWS_ACCESS_KEY_ID"],
                    creds["AWS_SECRET_ACCESS_KEY"],
                    creds.get("AWS_SESSION_TOKEN"),
                ),
            )
    return backend_client(backend, home, pool=pool)


class StateReader:
    """boto3 access to the backend bucket with admin credentials.

    ``concurrency`` bounds the reads in flight when many stages are read at once (one boto3
    client is thread-safe; its connection pool is sized to match).
    """

    def __init__(
        self, backend: BackendSettings, home: Path, *, concurrency: int = DEFAULT_CONCURRENCY
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.backend = backend
        self.concurrency = concurrency
        self.client = _reading_client(backend, home, pool=concurrency)

    def map(self, read: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
        """``[read(item) for item in items]`` with at most ``concurrency`` reads in flight; the
        first error raised is raised here (after the reads under way end)."""
        todo = list(items)
        if len(todo) <= 1 or self.concurrency == 1:
            return [read(item) for item in todo]
        with ThreadPoolExecutor(min(self.concurrency, len(todo))) as pool:
            return list(pool.map(read, todo))

    def _error_code(self, exc: Exception) -> str:
        response = getattr(exc, "response", None) or {}
        return str(response.get("Error", {}).get("Code", ""))

    def stages(self) -> list[str]:
        """Every workspace with a state object, sorted."""
        return [entry.stage for entry in self.entries()]

    def _workspace(self, key: str, suffix: str) -> str | None:
        if not key.endswith(suffix):
            return None
        ws = key[len(WORKSPACE_PREFIX) : -len(suffix)]
        return ws if ws and "/" not in ws else None

    def entries(self) -> list[StageEntry]:
        """Every workspace with a state object, sorted, from the listing alone: the state's size
        and last change, and whether a lock object sits beside it (no object is read)."""
        suffix = "/" + self.backend.key
        found: dict[str, tuple[int, datetime | None, str]] = {}
        locked: set[str] = set()
        kwargs: dict[str, Any] = {"Bucket": self.backend.bucket, "Prefix": WORKSPACE_PREFIX}
        try:
            while True:
                page = self.client.list_objects_v2(**kwargs)
                for item in page.get("Contents", []):
                    key = item["Key"]
                    ws = self._workspace(key, suffix)
                    if ws is not None:
                        found[ws] = (
                            int(item.get("Size", 0)),
                            item.get("LastModified"),
                            str(item.get("ETag", "")),
                        )
                        continue
                    ws = self._workspace(key, suffix + LOCK_SUFFIX)
                    if ws is not None:
                        locked.add(ws)
                if not page.get("IsTruncated"):
                    break
                kwargs["ContinuationToken"] = page["NextContinuationToken"]
        except Exception as exc:
            if self._error_code(exc) == "NoSuchBucket":
                return []
            raise Failed(f"cannot list stages in the state backend: {exc}") from None
        return [
            StageEntry(stage=ws, size=size, last_modified=moment, locked=ws in locked, etag=etag)
            for ws, (size, moment, etag) in sorted(found.items())
        ]

    def _get(self, stage: str) -> tuple[dict[str, Any], Any, str] | None:
        try:
            obj = self.client.get_object(
                Bucket=self.backend.bucket, Key=state_key(self.backend, stage)
            )
        except Exception as exc:
            if self._error_code(exc) in ("NoSuchKey", "404", "NoSuchBucket"):
                return None
            raise Failed(f"cannot read the state of {stage}: {exc}") from None
        body = obj["Body"].read()
        if not body.strip():
            return None
        try:
            return json.loads(body), obj.get("LastModified"), str(obj.get("ETag", ""))
        except ValueError:
            raise Failed(f"the state of {stage} is not valid JSON") from None

    def raw_state(self, stage: str) -> dict[str, Any] | None:
        """The whole state document (holds secrets: never print it)."""
        got = self._get(stage)
        return got[0] if got else None

    def state(self, stage: str) -> StageState | None:
        """The stage's current state, or None when it has none (or an empty one)."""
        got = self._get(stage)
        if got is None:
            return None
        data, last_modified, etag = got
        resources = [r for r in data.get("resources", []) if r.get("mode") == "managed"]
        return StageState(
            stage=stage,
            serial=int(data.get("serial", 0)),
            resources=sum(len(r.get("instances", [])) for r in resources),
            outputs=dict(data.get("outputs", {})),
            last_modified=last_modified,
            lineage=str(data.get("lineage", "")),
            etag=etag,
        )

    def lock(self, stage: str) -> dict[str, Any] | None:
        """Terraform's lock info (ID, Who, Operation, Created) when the stage is locked."""
        key = state_key(self.backend, stage) + LOCK_SUFFIX
        try:
            obj = self.client.get_object(Bucket=self.backend.bucket, Key=key)
        except Exception as exc:
            if self._error_code(exc) in ("NoSuchKey", "404", "NoSuchBucket"):
                return None
            raise Failed(f"cannot read the lock of {stage}: {exc}") from None
        try:
            info = json.loads(obj["Body"].read())
        except ValueError:
            return {"ID": "?", "Who": "?"}
        return dict(info) if isinstance(info, dict) else {"ID": "?", "Who": "?"}
