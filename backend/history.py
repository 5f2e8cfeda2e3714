"""State history through the plain S3 API: list a stage's state versions, roll one back.

Everything goes through boto3 (ListObjectVersions, GetObject with versionId, PutObject with
If-None-Match), so the same commands work against this server, AWS S3 or any S3 with versioning.
A rollback takes Terraform's own lock object first, so it can never interleave with an apply.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import json
import re
import socket
import uuid
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

DEFAULT_KEY = "forkstage/terraform.tfstate"
_SERIAL_RE = re.compile(rb'"serial"\s*:\s*(\d+)')


class HistoryError(Exception):
    """Base for the refusals below; the CLI maps them to exit codes."""


class Locked(HistoryError):
    pass


class NotFound(HistoryError):
    pass


class NotAState(HistoryError):
    pass


@dataclass(frozen=True)
class Retention:
    """What the state server keeps per key (its ``x-forkstage-retention`` answer header)."""

    versions: int
    days: float

    @classmethod
    def parse(cls, header: str | None) -> Retention | None:
        """None for servers that do not say (AWS S3, R2: their lifecycle rules decide)."""
        if not header:
            return None
        fields = dict(part.strip().partition("=")[::2] for part in header.split(";"))
        try:
            return cls(int(fields["versions"]), float(fields["days"]))
        except (KeyError, ValueError):
            return None


@dataclass(frozen=True)
class StateVersion:
    version_id: str
    last_modified: dt.datetime
    size: int
    latest: bool
    deleted: bool
    serial: int | None
    # retention (known when the server reports it; None for the newest version, always kept):
    expires: dt.datetime | None = None  # dropped then, at the latest, by the age rule
    writes_left: int | None = None  # dropped after this many more writes, by the count rule

    def to_json(self) -> dict[str, object]:
        return {
            "version_id": self.version_id,
            "last_modified": self.last_modified.astimezone(dt.UTC).isoformat(),
            "size": self.size,
            "latest": self.latest,
            "deleted": self.deleted,
            "serial": self.serial,
            "expires": self.expires.astimezone(dt.UTC).isoformat() if self.expires else None,
            "writes_left": self.writes_left,
        }


def state_key(stage: str, key: str = DEFAULT_KEY) -> str:
    """Terraform's key for a workspace: ``env:/<stage>/<key>`` (``default`` has no prefix)."""
    return key if stage == "default" else f"env:/{stage}/{key}"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _serial(s3: Any, bucket: str, key: str, version_id: str) -> int | None:
    """The state's serial, read from its first bytes (Terraform writes it near the top)."""
    try:
        got = s3.get_object(Bucket=bucket, Key=key, VersionId=version_id, Range="bytes=0-1023")
    except ClientError:
        return None
    match = _SERIAL_RE.search(got["Body"].read())
    return int(match.group(1)) if match else None


def list_versions(
    s3: Any, bucket: str, key: str, *, with_serial: bool = True
) -> list[StateVersion]:
    """Newest first, delete markers included; with each non-current version's expiry when the
    server reports its retention (a version is dropped ``days`` after the next newer one was
    written, or once ``versions`` newer ones exist)."""
    out: list[StateVersion] = []
    retention: Retention | None = None
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, Prefix=key):
        headers = page.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        retention = retention or Retention.parse(headers.get("x-forkstage-retention"))
        for v in page.get("Versions", []):
            if v["Key"] != key:
                continue
            serial = _serial(s3, bucket, key, v["VersionId"]) if with_serial else None
            out.append(
                StateVersion(
                    v["VersionId"], v["LastModified"], v["Size"], v["IsLatest"], False, serial
                )
            )
        for m in page.get("DeleteMarkers", []):
            if m["Key"] == key:
                out.append(
                    StateVersion(m["VersionId"], m["LastModified"], 0, m["IsLatest"], True, None)
                )
    out.sort(key=lambda v: v.last_modified, reverse=True)
    return _with_expiry(out, retention) if retention else out


def _with_expiry(found: list[StateVersion], retention: Retention) -> list[StateVersion]:
    kept: list[StateVersion] = found[:1]
    for i, v in enumerate(found[1:], start=1):
        replaced = found[i - 1].last_modified
        expires = replaced + dt.timedelta(days=retention.days)
        kept.append(
            dataclasses.replace(v, expires=expires, writes_left=max(retention.versions - i, 0))
        )
    return kept


def _lock_info(bucket: str, key: str) -> bytes:
    info = {
        "ID": str(uuid.uuid4()),
        "Operation": "forkstage-rollback",
        "Info": "",
        "Who": f"{getpass.getuser()}@{socket.gethostname()}",
        "Version": "",
        "Created": dt.datetime.now(dt.UTC).isoformat(),
        "Path": f"{bucket}/{key}",
    }
    return json.dumps(info).encode()


def rollback(s3: Any, bucket: str, key: str, version_id: str) -> tuple[str, int]:
    """Restore ``version_id`` as the newest version; returns (new version id, new serial).

    The restored state gets a serial above the current one so that no Terraform client treats
    it as stale, and the whole step runs under Terraform's lock object.
    """
    lock_key = f"{key}.tflock"
    try:
        old = s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)
    except ClientError as exc:
        if _code(exc) in ("NoSuchVersion", "NoSuchKey", "404", "InvalidArgument", "405"):
            raise NotFound(f"{key} has no version {version_id!r}") from None
        raise
    try:
        state = json.loads(old["Body"].read())
    except ValueError:
        raise NotAState(f"version {version_id} of {key} is not a Terraform state") from None
    if not isinstance(state, dict) or "serial" not in state:
        raise NotAState(f"version {version_id} of {key} is not a Terraform state")
    try:
        s3.put_object(Bucket=bucket, Key=lock_key, Body=_lock_info(bucket, key), IfNoneMatch="*")
    except ClientError as exc:
        if _code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            raise Locked(f"the state {key} is locked (lock object {lock_key} exists)") from None
        raise
    try:
        current_serial = 0
        try:
            head = s3.get_object(Bucket=bucket, Key=key)
            current_serial = int(json.loads(head["Body"].read()).get("serial", 0))
        except (ClientError, ValueError, TypeError):
            pass
        state["serial"] = max(int(state.get("serial", 0)), current_serial) + 1
        body = (json.dumps(state, indent=2) + "\n").encode()
        put = s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
        return str(put.get("VersionId", "")), int(state["serial"])
    finally:
        s3.delete_object(Bucket=bucket, Key=lock_key)
