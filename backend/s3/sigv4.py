"""AWS Signature V4 (header form) verification, computed here with hmac and hashlib.

The canonical request is built from the bytes as they arrived: the path exactly as sent (S3 neither
re-encodes nor normalizes it, and neither do botocore or the Go SDK when they sign for S3), so every
byte that becomes part of the key is covered by the signature. Query pairs arrive decoded and are
re-encoded per AWS's rules; header values are trimmed and their inner whitespace collapsed. The
derived signing key changes once a day per secret and region, so it is cached.

One authentication per request, as S3 has it: a second Authorization header, or a signed header
together with presigned-URL query parameters, is a 400; the credential scope must name the
server's region (``--region``, us-east-1 unless configured) or the answer is S3's 400
AuthorizationHeaderMalformed naming the region to use.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from backend.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidRequest,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)
from backend.s3.credentials import Credential

MAX_SKEW = dt.timedelta(minutes=15)
DEFAULT_REGION = "us-east-1"  # what AWS SDKs, the AWS CLI and Terraform sign with by default
REGION_RE = re.compile(r"[a-z0-9-]{1,32}")
# Query parameters of a presigned URL: with an Authorization header, two authentications.
_PRESIGN_PARAMS = frozenset({"x-amz-algorithm", "x-amz-credential", "x-amz-signature"})
PAYLOAD_MARKERS = ("UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")

_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)/(\d{8})/([a-z0-9-]{1,32})/([a-z0-9]{1,16})/"
    r"aws4_request\s*,\s*SignedHeaders=([a-z0-9;._-]+)\s*,\s*Signature=([0-9a-f]{64})\s*$"
)
_AMZ_DATE_RE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
# Headers a client may send without signing (botocore and the Go SDK leave these out).
_UNSIGNED_OK = frozenset({"x-amz-user-agent"})
_MAX_SIGNED = 64
_UNRESERVED = "-_.~"  # with letters and digits: RFC 3986 unreserved, never percent-encoded
_KEY_CACHE_SIZE = 64
_key_cache: dict[tuple[str, str, str], bytes] = {}


class HeaderSource(Protocol):
    """What the verifier reads from the request headers: ``backend.http.message.Headers`` or an
    ``email.message.Message`` (the stdlib server's), both case-insensitive."""

    def get(self, name: str, /) -> str | None: ...
    def get_all(self, name: str, /) -> list[str] | None: ...
    def __iter__(self) -> Iterator[str]: ...


@dataclass(frozen=True)
class Verified:
    credential: Credential
    content_sha256: str


def signing_key(secret: str, date: str, region: str) -> bytes:
    """kSigning for (secret, yyyymmdd, region, s3); cached, bounded, keyed by the secret itself
    so a rotated secret never reuses its predecessor's key."""
    cache_key = (secret, date, region)
    key = _key_cache.get(cache_key)
    if key is None:
        key = ("AWS4" + secret).encode()
        for part in (date, region, "s3", "aws4_request"):
            key = hmac.digest(key, part.encode(), "sha256")
        if len(_key_cache) >= _KEY_CACHE_SIZE:
            _key_cache.clear()  # one entry per credential and day: rarely ever full
        _key_cache[cache_key] = key
    return key


def canonical_query(query: Sequence[tuple[str, str]]) -> str:
    """Decoded pairs re-encoded (unreserved kept, the rest %XX upper-case of UTF-8), sorted by
    encoded name then encoded value."""
    pairs = sorted((quote(name, _UNRESERVED), quote(value, _UNRESERVED)) for name, value in query)
    return "&".join(f"{name}={value}" for name, value in pairs)


def _parse_amz_date(amz_date: str) -> dt.datetime:
    match = _AMZ_DATE_RE.fullmatch(amz_date)
    if match is None:
        raise AccessDenied("x-amz-date header missing or malformed")
    try:
        year, month, day, hour, minute, second = map(int, match.groups())
        return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
    except ValueError:
        raise AccessDenied("x-amz-date header missing or malformed") from None


def _canonical_headers(headers: HeaderSource, signed: Sequence[str]) -> str:
    lines = []
    for name in signed:
        values = headers.get_all(name)
        if not values:
            raise SignatureDoesNotMatch(f"signed header {name!r} is missing from the request")
        # Trim, and collapse inner whitespace runs to one space (as botocore does).
        lines.append(name + ":" + ",".join(" ".join(value.split()) for value in values) + "\n")
    return "".join(lines)


def verify(
    *,
    method: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    headers: HeaderSource,
    lookup: Callable[[str], Credential | None],
    now: dt.datetime | None = None,
    region: str | None = None,
) -> Verified:
    """Authenticate one request or raise a 403-class S3Error (a 400 for a bad payload hash
    header, two authentications or another ``region`` in the credential scope; None accepts
    any). ``raw_path`` is the request target's path exactly as received."""
    auths = headers.get_all("Authorization") or [""]
    if len(auths) > 1:
        raise InvalidArgument("more than one Authorization header")
    presigned = any(name.lower() in _PRESIGN_PARAMS for name, _ in query)
    if not auths[0]:
        if presigned:
            raise AccessDenied("presigned URLs are not supported; sign the Authorization header")
        raise AccessDenied("anonymous requests are not allowed: sign them with AWS SigV4")
    if presigned:
        raise InvalidArgument(
            "only one auth mechanism allowed: the Authorization header or presigned query"
            " parameters, not both"
        )
    match = _AUTH_RE.match(auths[0].strip())
    if not match:
        raise AccessDenied("unsupported or malformed Authorization header (need AWS4-HMAC-SHA256)")
    akid, scope_date, scope_region, service, signed_text, signature = match.groups()
    if service != "s3":
        raise SignatureDoesNotMatch("credential scope must name the s3 service")
    if region is not None and scope_region != region:
        raise AuthorizationHeaderMalformed(
            f"the authorization header is malformed; the region {scope_region!r} is wrong;"
            f" expecting {region!r}",
            Region=region,
        )
    credential = lookup(akid)
    if credential is None:
        raise InvalidAccessKeyId()
    amz_date = headers.get("x-amz-date") or ""
    when = _parse_amz_date(amz_date)
    current = now or dt.datetime.now(dt.UTC)
    if abs(current - when) > MAX_SKEW:
        raise RequestTimeTooSkewed()
    if scope_date != amz_date[:8]:
        raise SignatureDoesNotMatch("credential scope date differs from x-amz-date")
    signed = signed_text.split(";")
    if "host" not in signed or "x-amz-date" not in signed or len(signed) > _MAX_SIGNED:
        raise SignatureDoesNotMatch("the host and x-amz-date headers must be signed")
    if "" in signed or signed != sorted(set(signed)):
        raise SignatureDoesNotMatch("SignedHeaders must be sorted, unique, lower-case names")
    signed_set = frozenset(signed)
    for name in headers:
        lname = name.lower()
        if lname.startswith("x-amz-") and lname not in signed_set and lname not in _UNSIGNED_OK:
            raise AccessDenied(f"header {lname} must be signed")
    content_sha256 = headers.get("x-amz-content-sha256")
    if content_sha256 is None:
        raise InvalidRequest("missing required header x-amz-content-sha256")
    if content_sha256 not in PAYLOAD_MARKERS and not _SHA256_RE.fullmatch(content_sha256):
        raise InvalidRequest("x-amz-content-sha256 must be a hex SHA-256 or UNSIGNED-PAYLOAD")

    canonical_headers = _canonical_headers(headers, signed)
    try:
        query_text = canonical_query(query)
        # header values are the wire's bytes, decoded as latin-1 by backend.http.wire: encoded
        # back the same way, the signature covers the bytes sent (UTF-8 metadata included)
        canonical = "\n".join(
            (method, raw_path, query_text, canonical_headers, signed_text, content_sha256)
        ).encode("latin-1")
    except UnicodeEncodeError:  # not a byte (a lone surrogate): nothing a client could sign
        raise SignatureDoesNotMatch() from None
    scope = f"{scope_date}/{scope_region}/s3/aws4_request"
    digest = hashlib.sha256(canonical).hexdigest()
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{digest}".encode()
    key = signing_key(credential.secret_access_key, scope_date, scope_region)
    expected = hmac.new(key, to_sign, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise SignatureDoesNotMatch()
    return Verified(credential=credential, content_sha256=content_sha256)
