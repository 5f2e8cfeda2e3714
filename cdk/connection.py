"""A branch's connection details as one libpq URL: the single place a ``postgresql://`` is built.

Used wherever a URL is made from concrete values (the local cloud's endpoints and Hyperdrive
origins, ``forkstage migrate --stage`` reading a deployed state). Inside a synthesized config
the URL is assembled by Terraform from references instead (``cdk/migrations.py``), because the
password is only known at apply time.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode


def postgres_url(
    *,
    host: str,
    port: int | str,
    database: str,
    user: str,
    password: str | None = None,
    **params: str,
) -> str:
    """``postgresql://user[:password]@host:port/database[?params]``, every part percent-encoded.

    A ``host`` that already carries ``:port`` (as Neon's endpoint host can) keeps that port.
    """
    if ":" in host and not host.startswith("["):
        host, port = host.rsplit(":", 1)
    auth = quote(user, safe="")
    if password is not None:
        auth += ":" + quote(password, safe="")
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{auth}@{host}:{port}/{quote(database, safe='')}{query}"
