"""``PostgresOrigin``: a database as a client such as Hyperdrive sees it, and when it is ready.

Neutral ground between the construct that provides a database (a Neon branch) and the ones that
connect to it (a Hyperdrive config), so neither module imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdk.core import Fn, ITerraformDependable


@dataclass(frozen=True)
class PostgresOrigin:
    """Where to connect, as the owner role, and what must have run first (e.g. migrations)."""

    host: str
    database: str
    user: str
    password: str
    port: int = 5432
    depends_on: tuple[ITerraformDependable, ...] = ()


def url_part(value: str) -> str:
    """Percent-encode inside Terraform, on the real value (nothing is resolved at synth).

    Terraform's urlencode() writes a space as "+", which libpq does not decode in the user or
    password part of a URL; a literal "+" comes out as %2B, so every "+" left is a space.
    """
    return Fn.replace(Fn.urlencode(value), "+", "%20")


def url_expression(
    *,
    host: str,
    database: str,
    role: str,
    password: str,
    port: int | str | None = None,
    sslmode: str = "require",
) -> str:
    """``postgresql://role:password@host[:port]/database?sslmode=...``, built by Terraform.

    Without ``port`` it has Neon's own shape (its connection strings carry no port).
    """
    return (
        "postgresql://"
        + url_part(role)
        + ":"
        + url_part(password)
        + "@"
        + host
        + ("" if port is None else ":" + str(port))
        + "/"
        + url_part(database)
        + "?sslmode="
        + sslmode
    )


def pooler_host(host: str) -> str:
    """Neon's pooled host: the first DNS label + ``-pooler`` (``ep-x-1.aws.neon.tech`` ->
    ``ep-x-1-pooler.aws.neon.tech``), computed by Terraform from the endpoint's host."""
    return Fn.replace(host, "/^([^.]+)/", "$1-pooler")
