"""Terraform's machine-readable ``-json`` events: errors, change counts, planned changes, timings.

Every ``plan``/``apply`` forkstage runs uses ``-json``, so what it reports comes from Terraform's
own events, not from scraping its human output.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Terraform's diagnostics at these levels carry the message we show on failure.
_ERROR_LEVELS = {"error"}


def json_events(stdout: str, marker: str = "") -> Iterator[dict[str, Any]]:
    """The machine-readable events of a ``-json`` run (lines holding ``marker``, if given)."""
    for line in stdout.splitlines():
        if not line.startswith("{") or marker not in line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


def terraform_error(stdout: str, stderr: str) -> str:
    """The error lines of a failed run (JSON diagnostics or Terraform's human output)."""
    messages: list[str] = []
    for event in json_events(stdout):
        if event.get("@level") in _ERROR_LEVELS:
            diag = event.get("diagnostic") or {}
            text = diag.get("summary") or event.get("@message", "")
            detail = (diag.get("detail") or "").strip()
            messages.append(f"{text}: {detail}" if detail else text)
    if messages:
        return "\n".join(messages)
    text = "\n".join(x.rstrip() for x in (stderr or stdout).strip().splitlines())
    return text or "terraform failed without a message"


def change_summary(stdout: str) -> dict[str, int]:
    """Counts from the ``change_summary`` event of ``apply -json`` / ``plan -json``."""
    counts = {"add": 0, "change": 0, "remove": 0}
    for event in json_events(stdout, '"change_summary"'):
        changes = event.get("changes") or {}
        counts = {k: int(changes.get(k, 0)) for k in counts}
    return counts


def planned_changes(stdout: str) -> list[dict[str, str]]:
    """Managed-resource ``planned_change`` events of ``plan``/``apply -json``."""
    changes = []
    for event in json_events(stdout, '"planned_change"'):
        change = event.get("change") or {}
        resource = change.get("resource") or {}
        if resource.get("mode") == "data" or str(resource.get("addr", "")).startswith("data."):
            continue  # reads of data sources are not changes
        changes.append(
            {
                "address": str(resource.get("addr", "")),
                "type": str(resource.get("resource_type", "")),
                "action": str(change.get("action", "")),
            }
        )
    return sorted(changes, key=lambda c: c["address"])


def apply_seconds(stdout: str, address_prefix: str) -> float | None:
    """Wall time between ``apply_start`` and ``apply_complete`` of matching resources."""
    starts: dict[str, datetime] = {}
    total = 0.0
    found = False
    for event in json_events(stdout, '"apply_'):
        try:
            addr = str(event["hook"]["resource"]["addr"])
            moment = datetime.fromisoformat(str(event["@timestamp"]).replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError):
            continue
        if not addr.startswith(address_prefix):
            continue
        if event.get("type") == "apply_start":
            starts[addr] = moment
        elif event.get("type") == "apply_complete" and addr in starts:
            total += (moment - starts.pop(addr)).total_seconds()
            found = True
    return total if found else None


# hook action -> (while it runs, when it is done)
_VERBS = {
    "create": ("creating", "created"),
    "update": ("updating", "updated"),
    "delete": ("destroying", "destroyed"),
    "replace": ("replacing", "replaced"),
    "read": ("reading", "read"),
}
_PROGRESS_TYPES = {
    "apply_start": "start",
    "apply_progress": "progress",
    "apply_complete": "complete",
    "apply_errored": "errored",
}


@dataclass(frozen=True)
class Progress:
    """One resource's step as Terraform reports it during an apply."""

    kind: str  # start | progress | complete | errored
    address: str
    action: str
    elapsed: float | None = None

    @property
    def line(self) -> str:
        doing, done = _VERBS.get(self.action, (f"{self.action}ing", f"{self.action}d"))
        took = f"{self.elapsed:.0f}s" if self.elapsed is not None else "?"
        if self.kind == "start":
            return f"{doing} {self.address} ..."
        if self.kind == "progress":
            return f"still {doing} {self.address} ({took})"
        if self.kind == "complete":
            return f"{done} {self.address} after {took}"
        return f"failed {doing} {self.address} after {took}"

    @property
    def done(self) -> str:
        """``created <address>``: what a completed step did."""
        return f"{_VERBS.get(self.action, ('', self.action))[1]} {self.address}"


def parse_event(line: str) -> dict[str, Any] | None:
    """One ``-json`` line as an event (None for anything else)."""
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def progress(event: dict[str, Any]) -> Progress | None:
    """A managed resource's apply step, from an ``apply_*`` event (reads of data sources and
    anything else: None)."""
    kind = _PROGRESS_TYPES.get(str(event.get("type", "")))
    hook = event.get("hook")
    if kind is None or not isinstance(hook, dict):
        return None
    address = str((hook.get("resource") or {}).get("addr", ""))
    if not address or address.startswith("data.") or ".data." in address:
        return None
    elapsed = hook.get("elapsed_seconds")
    return Progress(
        kind=kind,
        address=address,
        action=str(hook.get("action", "")),
        elapsed=float(elapsed) if isinstance(elapsed, int | float) else None,
    )


def lock_info(text: str) -> dict[str, str]:
    """The ``Lock Info`` block of Terraform's "Error acquiring the state lock" (ID, Who, ...)."""
    info: dict[str, str] = {}
    _, found, rest = text.partition("Lock Info:")
    if not found:
        return info
    for line in rest.splitlines():
        key, sep, value = line.strip().partition(":")
        if not sep or not key or " " in key:
            if info:
                break
            continue
        info[key] = value.strip()
    return info
