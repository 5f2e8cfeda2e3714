"""The two S3 reads the stage views make (ListObjectsV2, GetObject), signed with SigV4 over
keep-alive ``http.client`` connections.

``forkstage stages`` over hundreds of stages is one listing and a GET per stage: boto3 costs
about 0.3 s to import and set up and a millisecond or two of CPU per request, more than the
embedded server takes to answer. With an explicit key (the embedded admin key, a CI key in the
environment) these reads go through here; anything else (profiles, instance roles) stays
with boto3 (``forkstage.state``).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class S3Error(Exception):
    """An S3 error answer; ``response`` has boto3's shape so callers read the code alike."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code or status}: {message}" if message else (code or str(status)))
        self.status = status
        self.response = {"Error": {"Code": code or str(status), "Message": message}}


def _uri(value: str, *, slash: bool) -> str:
    return quote(value, safe="-_.~/" if slash else "-_.~")


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


class S3Lite:
    """Path-style requests to one endpoint (``https://s3.<region>.amazonaws.com`` when none is
    given); one keep-alive connection per thread, so callers may read from many threads."""

    def __init__(
        self,
        *,
        endpoint: str | None,
        region: str,
        credentials: Credentials,
        timeout: float = 30.0,
    ) -> None:
        url = urlsplit(endpoint or f"https://s3.{region}.amazonaws.com")
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an S3 endpoint URL: {endpoint}")
        self.secure = url.scheme == "https"
        self.host = url.hostname
        self.port = url.port or (443 if self.secure else 80)
        default_port = self.port == (443 if self.secure else 80)
        self.host_header = self.host if default_port else f"{self.host}:{self.port}"
        self.base_path = url.path.rstrip("/")
        self.region = region
        self.credentials = credentials
        self.timeout = timeout
        self._local = threading.local()
        self._keys: dict[str, bytes] = {}

    # -- operations ----------------------------------------------------------------------------
    def list_objects_v2(self, **kwargs: Any) -> dict[str, Any]:
        """The fields of boto3's answer forkstage reads: Contents (Key, Size, LastModified),
        IsTruncated, NextContinuationToken."""
        query = {"list-type": "2"}
        if kwargs.get("Prefix"):
            query["prefix"] = kwargs["Prefix"]
        if kwargs.get("ContinuationToken"):
            query["continuation-token"] = kwargs["ContinuationToken"]
        _, _, body = self._request(f"/{kwargs['Bucket']}", query)
        root = ET.fromstring(body)
        contents = []
        for item in root.iter(f"{_NS}Contents"):
            contents.append(
                {
                    "Key": item.findtext(f"{_NS}Key", ""),
                    "Size": int(item.findtext(f"{_NS}Size", "0") or 0),
                    "LastModified": _iso(item.findtext(f"{_NS}LastModified")),
                    "ETag": item.findtext(f"{_NS}ETag", ""),
                }
            )
        page: dict[str, Any] = {
            "Contents": contents,
            "IsTruncated": root.findtext(f"{_NS}IsTruncated", "false") == "true",
        }
        token = root.findtext(f"{_NS}NextContinuationToken")
        if token:
            page["NextContinuationToken"] = token
        return page

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        _, headers, body = self._request(f"/{Bucket}/{Key}", {})
        modified = headers.get("last-modified")
        return {
            "Body": _Body(body),
            "LastModified": parsedate_to_datetime(modified) if modified else None,
            "ETag": headers.get("etag", ""),
        }

    # -- HTTP ----------------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            kind = http.client.HTTPSConnection if self.secure else http.client.HTTPConnection
            conn = kind(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def _request(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        canonical_path = _uri(self.base_path + path, slash=True)
        canonical_query = "&".join(
            f"{_uri(k, slash=False)}={_uri(v, slash=False)}" for k, v in sorted(query.items())
        )
        headers = self._sign(canonical_path, canonical_query)
        target = canonical_path + (f"?{canonical_query}" if canonical_query else "")
        for attempt in (1, 2):  # a keep-alive connection the server closed: once more, fresh
            conn = self._connection()
            try:
                conn.request("GET", target, headers=headers)
                response = conn.getresponse()
                body = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        got = {k.lower(): v for k, v in response.getheaders()}
        if response.status >= 300:
            code = message = ""
            try:
                root = ET.fromstring(body)
                code, message = root.findtext("Code", ""), root.findtext("Message", "")
            except ET.ParseError:
                pass
            if not code and response.status == 404:
                code = "NoSuchKey"
            raise S3Error(response.status, code, message)
        return response.status, got, body

    def _signing_key(self, day: str) -> bytes:
        key = self._keys.get(day)
        if key is None:
            key = ("AWS4" + self.credentials.secret_access_key).encode()
            for part in (day, self.region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {day: key}
        return key

    def _sign(self, path: str, query: str) -> dict[str, str]:
        now = datetime.now(UTC)
        stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        headers = {
            "host": self.host_header,
            "x-amz-content-sha256": EMPTY_SHA256,
            "x-amz-date": stamp,
        }
        if self.credentials.session_token:
            headers["x-amz-security-token"] = self.credentials.session_token
        names = sorted(headers)
        canonical = "\n".join(
            [
                "GET",
                path,
                query,
                "".join(f"{n}:{headers[n]}\n" for n in names),
                ";".join(names),
                EMPTY_SHA256,
            ]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        signature = hmac.new(self._signing_key(day), to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.credentials.access_key_id}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        return headers


class _Body:
    """``obj["Body"].read()``, as boto3's streaming body."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self) -> bytes:
        return self._data


def _iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
