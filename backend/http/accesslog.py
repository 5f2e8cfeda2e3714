"""One access-log line per request, safe to read: nothing a client sends can forge a line.

The request target (decoded, as the router read it, query values dropped) and the user agent
are quoted, with quotes, backslashes and every control or non-printable character escaped
(``\\n``, ``\\x00``, ``\\u2028``). The credential appears by its log-safe name only; the
Authorization header and secrets never reach this module.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}
MAX_FIELD = 2048  # characters of a field kept; a longer one is cut and marked


def escape(text: str) -> str:
    """``text`` with quotes, backslashes and non-printable characters escaped."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        out = text
    else:
        out = "".join(_escape_char(c) for c in text)
    return out if len(out) <= MAX_FIELD else out[:MAX_FIELD] + "..."


def _escape_char(c: str) -> str:
    named = _NAMED.get(c)
    if named is not None:
        return named
    if c.isprintable():
        return c
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def without_values(target: str) -> str:
    """The target with its query's values dropped, names kept (``?uploadId&partNumber``).

    Query values can carry what must never be logged (a presigned URL's signature, say);
    the names are enough to tell which operation a line was.
    """
    path, sep, query = target.partition("?")
    if not sep:
        return path
    return path + "?" + "&".join(piece.partition("=")[0] for piece in query.split("&") if piece)


def line(
    *,
    client: str,
    method: str,
    target: str,
    status: int,
    ms: float,
    op: str,
    who: str,
    user_agent: str,
) -> str:
    """``client METHOD "target" status 1.2ms Operation who "user agent"``."""
    return (
        f'{client} {escape(method)} "{escape(target)}" {status} {ms:.1f}ms {op} {who} '
        f'"{escape(user_agent)}"'
    )
