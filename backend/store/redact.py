"""Outputs-only view of a Terraform state, for credentials that may read another stage's outputs.

A PR stage reads staging through ``terraform_remote_state``, which needs only ``outputs``. The
redacted document keeps what Terraform checks (format version, serial, lineage, version) and the
non-sensitive outputs, and drops every resource: no attribute, secret or not, leaves the server.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict

from backend.errors import AccessDenied


def outputs_only(state_bytes: bytes) -> bytes:
    """The redacted state, or AccessDenied when the object is not a Terraform v4 state."""
    try:
        state = json.loads(state_bytes)
    except (ValueError, UnicodeDecodeError):
        raise AccessDenied("outputs-only access: the object is not a Terraform state") from None
    if not isinstance(state, dict) or state.get("version") != 4:
        raise AccessDenied("outputs-only access: the object is not a Terraform v4 state")
    outputs = state.get("outputs") or {}
    if not isinstance(outputs, dict):
        raise AccessDenied("outputs-only access: the state's outputs are malformed")
    kept = {
        name: {k: v for k, v in output.items() if k in ("value", "type")}
        for name, output in outputs.items()
        if isinstance(output, dict) and not output.get("sensitive")
    }
    redacted = {
        "version": 4,
        "terraform_version": state.get("terraform_version", ""),
        "serial": state.get("serial", 0),
        "lineage": state.get("lineage", ""),
        "outputs": kept,
        "resources": [],
        "check_results": None,
    }
    return (json.dumps(redacted, indent=2, sort_keys=False) + "\n").encode()


class Views:
    """The redacted view's (size, md5 hex, sha256 hex) per version id.

    Versions never change, so neither do their views: a listing shows an outputs-only
    credential the same size and ETag its GET returns without redacting every state each time.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._cache: OrderedDict[str, tuple[int, str, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, version_id: str) -> tuple[int, str, str] | None:
        with self._lock:
            found = self._cache.get(version_id)
            if found is not None:
                self._cache.move_to_end(version_id)
            return found

    def remember(self, version_id: str, body: bytes) -> tuple[int, str, str]:
        view = (
            len(body),
            hashlib.md5(body, usedforsecurity=False).hexdigest(),
            hashlib.sha256(body).hexdigest(),
        )
        with self._lock:
            self._cache[version_id] = view
            self._cache.move_to_end(version_id)
            while len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        return view
