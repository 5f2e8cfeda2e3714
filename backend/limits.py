"""Every bound the state server puts on what a client can make it hold, in one place.

The defaults are what ``python -m backend serve`` and ``forkstage backend serve`` use; each has
a command-line option and is documented in ``docs/state-server.md``. Hostile or broken clients
meet these limits; Terraform never comes close to them.
"""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


@dataclass(frozen=True)
class Limits:
    # connections -------------------------------------------------------------------------
    max_connections: int = 256  # open client connections; the oldest idle one makes room
    # connections that have not shown a valid signature yet (new ones, refused ones): a flood
    # of strangers churns within this budget and never takes a signed client's slot
    max_unauthenticated: int = 64
    # requests of one stage credential between its signature and its answer (admin: no cap), so
    # a leaked PR credential cannot hold every slot either
    max_requests_per_credential: int = 32
    header_timeout: float = 10.0  # seconds from a request's first byte to the end of its head
    idle_timeout: float = 60.0  # keep-alive: seconds a connection may wait for its next request
    body_grace: float = 10.0  # seconds a body may take before the minimum rate applies
    body_min_rate: int = 64 * KIB  # bytes per second, averaged over the whole body so far
    # objects and quotas ------------------------------------------------------------------
    max_object_bytes: int = 64 * MIB  # one PUT or one assembled multipart object
    memory_body_bytes: int = 256 * KIB  # larger bodies are spooled to disk, never held whole
    stage_max_keys: int = 1000  # live keys a stage credential may own
    stage_max_bytes: int = 1 * GIB  # bytes (every kept version and unfinished part) per stage
    retain_versions: int = 100  # versions kept per key (the newest is always kept)
    retain_days: float = 90.0  # older non-current versions are dropped
    upload_expiry_hours: float = 24.0  # unfinished multipart uploads are aborted after this
    disk_reserve_bytes: int = 64 * MIB  # writes are refused below this much free space

    def check(self) -> None:
        """Raise ValueError naming the first setting that cannot work."""
        positive = {
            "max_connections": self.max_connections,
            "max_unauthenticated": self.max_unauthenticated,
            "max_requests_per_credential": self.max_requests_per_credential,
            "header_timeout": self.header_timeout,
            "idle_timeout": self.idle_timeout,
            "body_min_rate": self.body_min_rate,
            "max_object_bytes": self.max_object_bytes,
            "stage_max_keys": self.stage_max_keys,
            "stage_max_bytes": self.stage_max_bytes,
            "retain_versions": self.retain_versions,
            "retain_days": self.retain_days,
            "upload_expiry_hours": self.upload_expiry_hours,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be greater than 0")
        if self.body_grace < 0 or self.disk_reserve_bytes < 0 or self.memory_body_bytes < 0:
            raise ValueError("body_grace, disk_reserve_bytes and memory_body_bytes must be >= 0")


DEFAULT_LIMITS = Limits()
