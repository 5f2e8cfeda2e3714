"""AWS Signature V4 (header form) verification.

The signature is recomputed with botocore's own ``S3SigV4Auth`` on a request rebuilt from what
arrived, restricted to the headers the client says it signed, and compared in constant time. We
never chain HMACs ourselves: botocore's signer is the reference both boto3 and our tests use.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import Message
from typing import Any

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from backend.credentials import Credential
from backend.errors import (
    AccessDenied,
    InvalidAccessKeyId,
    InvalidRequest,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)

MAX_SKEW = dt.timedelta(minutes=15)
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)/(\d{8})/([a-z0-9-]{1,32})/([a-z0-9]{1,16})/"
    r"aws4_request\s*,\s*SignedHeaders=([a-z0-9;._-]+)\s*,\s*Signature=([0-9a-f]{64})\s*$"
)
# Headers a client may send without signing (botocore and the Go SDK leave these out).
_UNSIGNED_OK = {"x-amz-user-agent"}
PAYLOAD_MARKERS = ("UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")


@dataclass(frozen=True)
class Verified:
    credential: Credential
    content_sha256: str


class _Verifier(S3SigV4Auth):
    """botocore's S3 signer, told which headers the client signed."""

    def __init__(self, credentials: Credentials, region: str, signed: Sequence[str]) -> None:
        super().__init__(credentials, "s3", region)
        self._signed = signed

    def headers_to_sign(self, request: Any) -> HTTPHeaders:
        picked = HTTPHeaders()
        for name in self._signed:
            for value in request.headers.get_all(name) or []:
                picked[name] = value
        return picked


def _headers_of(message: Message, names: Sequence[str]) -> HTTPHeaders:
    out = HTTPHeaders()
    for name in names:
        values = message.get_all(name)
        if values is None:
            raise SignatureDoesNotMatch(f"signed header {name!r} is missing from the request")
        for value in values:
            out[name] = value
    return out


def verify(
    *,
    method: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    headers: Message,
    lookup: Callable[[str], Credential | None],
    now: dt.datetime | None = None,
) -> Verified:
    """Authenticate one request or raise a 403-class S3Error."""
    auth = headers.get("Authorization")
    if not auth:
        if any(k.lower() == "x-amz-signature" for k, _ in query):
            raise AccessDenied("presigned URLs are not supported; sign the Authorization header")
        raise AccessDenied("anonymous requests are not allowed: sign them with AWS SigV4")
    match = _AUTH_RE.match(auth.strip())
    if not match:
        raise AccessDenied("unsupported or malformed Authorization header (need AWS4-HMAC-SHA256)")
    akid, scope_date, region, service, signed_text, signature = match.groups()
    if service != "s3":
        raise SignatureDoesNotMatch("credential scope must name the s3 service")
    credential = lookup(akid)
    if credential is None:
        raise InvalidAccessKeyId()
    amz_date = headers.get("x-amz-date", "")
    try:
        when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise AccessDenied("x-amz-date header missing or malformed") from None
    current = now or dt.datetime.now(dt.UTC)
    if abs(current - when) > MAX_SKEW:
        raise RequestTimeTooSkewed()
    if scope_date != amz_date[:8]:
        raise SignatureDoesNotMatch("credential scope date differs from x-amz-date")
    signed = signed_text.split(";")
    if "host" not in signed or "x-amz-date" not in signed or len(signed) > 64:
        raise SignatureDoesNotMatch("the host and x-amz-date headers must be signed")
    for name in headers:
        lname = name.lower()
        if lname.startswith("x-amz-") and lname not in signed and lname not in _UNSIGNED_OK:
            raise AccessDenied(f"header {lname} must be signed")
    content_sha256 = headers.get("x-amz-content-sha256")
    if content_sha256 is None:
        raise InvalidRequest("missing required header x-amz-content-sha256")
    if content_sha256 not in PAYLOAD_MARKERS and not re.fullmatch(r"[0-9a-f]{64}", content_sha256):
        raise InvalidRequest("x-amz-content-sha256 must be a hex SHA-256 or UNSIGNED-PAYLOAD")

    request = AWSRequest(
        method=method,
        url=f"http://{headers.get('host', '')}{raw_path}",
        headers=_headers_of(headers, signed),
        params=list(query),
    )
    request.context["timestamp"] = amz_date
    signer = _Verifier(
        Credentials(credential.access_key_id, credential.secret_access_key), region, signed
    )
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise SignatureDoesNotMatch()
    return Verified(credential=credential, content_sha256=content_sha256)
