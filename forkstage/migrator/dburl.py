"""Database URLs: checked before use, and never shown with their password.

Every message that could mention a URL (connection errors, driver messages) goes through
``redact`` / ``scrub`` first, because CI logs are public to everyone who can open a PR.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from forkstage.errors import BadInput

SCHEMES = ("postgresql", "postgres")
MASK = "***"


def check_url(url: str) -> None:
    """Raise BadInput (without echoing the URL's secret) unless ``url`` is a libpq URL."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        got = f"{scheme}://..." if scheme else "a value without a scheme"
        raise BadInput(f"the database URL must start with postgresql:// (got {got})")
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        detail = scrub(" ".join(str(exc).split()), url)
        raise BadInput(f"bad database URL {redact(url)}: {detail}") from None


def password_of(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        secret = unquote(parts.password) if parts.password else None
    except ValueError:
        secret = None
    query = re.search(r"(?:^|[?&])password=([^&]*)", url.split("?", 1)[1] if "?" in url else "")
    if query:
        secret = unquote(query.group(1))
    return secret or None


def redact(url: str) -> str:
    """``url`` with its password (userinfo or ``password=`` parameter) replaced by ***."""
    masked = re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@]*):[^@/?#]*@", rf"\1:{MASK}@", url)
    masked = re.sub(r"([?&]password=)[^&]*", rf"\g<1>{MASK}", masked)
    return masked


def scrub(text: str, url: str) -> str:
    """``text`` with every spelling of ``url``'s password replaced by ***."""
    text = text.replace(url, redact(url))
    secret = password_of(url)
    if secret:
        for form in sorted({secret, quote(secret, safe=""), quote(secret)}, key=len, reverse=True):
            text = text.replace(form, MASK)
    return text


def describe(url: str) -> str:
    """``user@host:port/db`` for messages (no password, no parameters)."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return redact(url)
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    user = info.get("user") or "?"
    db = info.get("dbname") or user
    return f"{user}@{host}:{port}/{db}"
