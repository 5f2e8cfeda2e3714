"""Reach a local-cloud endpoint from its Neon-shaped host name.

Local endpoints are named like Neon's (``ep-...neon.localhost``, port 5432 in every config) so the
config applied locally is the one applied in the cloud; clients on this machine ask the local
control plane which 127.0.0.1 port serves the host.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from localcloud.neon import HOST_SUFFIX, ControlPlane, NotFound


def is_local_host(host: str | None) -> bool:
    return bool(host) and str(host).endswith(HOST_SUFFIX)


def connect_overrides(url: str, home: Path) -> dict[str, str]:
    """libpq keyword overrides that route ``url`` to its local endpoint ({} for other hosts).

    The local PostgreSQL servers listen on loopback without TLS, so ``sslmode`` is relaxed for
    them only.
    """
    host = urlsplit(url).hostname
    if not is_local_host(host):
        return {}
    try:
        address, port = ControlPlane(home).resolve_host(str(host))
    except NotFound:
        return {}
    return {"hostaddr": address, "port": str(port), "sslmode": "disable"}
