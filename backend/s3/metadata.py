"""What an object keeps of its request headers, and the headers S3 refuses rather than ignores.

Header values arrive as the wire's bytes (``backend.http.wire`` decodes them as latin-1, byte for
byte, and the signature covers exactly those bytes). User metadata is UTF-8 text: a value that is
not plain ASCII is stored as S3 returns it, RFC 2047 encoded (``=?UTF-8?B?...?=``), so every
response header stays mail-safe ASCII. The standard headers S3 stores with an object
(``Cache-Control``, ``Content-Disposition``, ``Content-Encoding``, ``Content-Language``,
``Expires``) are kept byte for byte and sent back on GET and HEAD.
"""

from __future__ import annotations

import base64

from backend.errors import InvalidArgument, NotImplementedOp
from backend.http.message import Headers

MAX_USER_METADATA = 2048  # bytes of names and values, as S3 counts them
STORED_HEADERS = (
    "Cache-Control",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Expires",
)
# GET/HEAD query parameters that replace a stored header in the answer (S3's response-*).
RESPONSE_OVERRIDES = {
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
    "response-content-language": "Content-Language",
    "response-content-type": "Content-Type",
    "response-expires": "Expires",
}
# Server-side encryption with customer keys (SSE-C) or KMS: the server stores no keys.
_SSE_HEADERS = (
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key",
    "x-amz-server-side-encryption-customer-key-md5",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-context",
    "x-amz-server-side-encryption-bucket-key-enabled",
)


# Write headers S3 would act on (tags, object lock, website redirects): refused, not dropped.
_WRITE_FEATURES = (
    "x-amz-tagging",
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold",
    "x-amz-website-redirect-location",
)


def _text(raw: str) -> str:
    """A header value's UTF-8 text, or InvalidArgument."""
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise InvalidArgument("metadata values must be UTF-8 text") from None


def _mail_safe(text: str) -> str:
    if text.isascii():
        return text
    return "=?UTF-8?B?" + base64.b64encode(text.encode()).decode("ascii") + "?="


def stored(headers: Headers) -> dict[str, str]:
    """User metadata (``x-amz-meta-*``) and the standard headers an object keeps."""
    meta: dict[str, str] = {}
    size = 0
    for name, value in headers.items():
        lname = name.lower()
        if lname.startswith("x-amz-meta-"):
            shown = _mail_safe(_text(value))
            meta[lname] = shown
            size += len(lname) - len("x-amz-meta-") + len(shown)
    if size > MAX_USER_METADATA:
        raise InvalidArgument("user metadata exceeds 2 KB")
    for name in STORED_HEADERS:
        value = headers.get(name, "")
        if name == "Content-Encoding":  # aws-chunked frames the request; it is not stored
            codings = [c.strip() for c in value.split(",") if c.strip()]
            value = ", ".join(c for c in codings if c.lower() != "aws-chunked")
        if value:
            meta[name] = value
    return meta


def refuse_unsupported(method: str, key: str, params: dict[str, str], headers: Headers) -> None:
    """Headers and parameters S3 would act on and this server cannot: 501, never ignored."""
    if not key:
        return
    sse = headers.get("x-amz-server-side-encryption")
    if (sse is not None and sse.strip().upper() != "AES256") or any(
        name in headers for name in _SSE_HEADERS
    ):
        raise NotImplementedOp("server-side encryption with KMS or customer keys is not supported")
    if "partNumber" in params and "uploadId" not in params and method in ("GET", "HEAD"):
        raise NotImplementedOp("GET/HEAD by partNumber is not supported: use a Range")
    if method in ("PUT", "POST"):
        for name in _WRITE_FEATURES:
            if name in headers:
                raise NotImplementedOp(f"{name} is not supported by this server")
        storage = headers.get("x-amz-storage-class")
        if storage is not None and storage.strip().upper() != "STANDARD":
            raise NotImplementedOp("only the STANDARD storage class is served")
