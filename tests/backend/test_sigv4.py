"""The SigV4 verifier against botocore's signer: what boto3 would send is accepted, and a change
to any signed byte (path, query, header, method, payload hash, date) is refused."""

from __future__ import annotations

import datetime as dt
import email.parser
import string
from dataclasses import dataclass, replace
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode, percent_encode_sequence
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.errors import (
    AccessDenied,
    InvalidAccessKeyId,
    InvalidRequest,
    RequestTimeTooSkewed,
    S3Error,
    SignatureDoesNotMatch,
)
from backend.http.message import Headers
from backend.s3 import sigv4
from backend.s3.credentials import Credential

HOST = "127.0.0.1:9000"
ADMIN = Credential("AKIDSIGV4TEST", "s3cret/with+odd=chars", "admin")
METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")
SIGNED_DATE_REFUSALS = (SignatureDoesNotMatch, AccessDenied, RequestTimeTooSkewed)


@dataclass(frozen=True)
class Wire:
    """One request as the server receives it."""

    method: str
    raw_path: str
    query: list[tuple[str, str]]
    headers: list[tuple[str, str]]

    def verify(self, cred: Credential = ADMIN, now: dt.datetime | None = None) -> sigv4.Verified:
        return sigv4.verify(
            method=self.method,
            raw_path=self.raw_path,
            query=self.query,
            headers=Headers(self.headers),
            lookup=lambda akid: cred if akid == cred.access_key_id else None,
            now=now or self.when,
        )

    @property
    def when(self) -> dt.datetime:
        stamp = Headers(self.headers).get("x-amz-date", "")
        return dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)

    def with_header(self, index: int, value: str) -> Wire:
        headers = list(self.headers)
        headers[index] = (headers[index][0], value)
        return replace(self, headers=headers)


def boto3_request(
    method: str,
    key: str,
    query: list[tuple[str, str]],
    extra: list[tuple[str, str]],
    *,
    payload: bytes | str = b"",
    cred: Credential = ADMIN,
    region: str = "us-east-1",
) -> Wire:
    """Sign with botocore's S3SigV4Auth and lay the request out as boto3 puts it on the wire:
    key encoded with safe '/~', query encoded into the URL, headers as signed plus Host."""
    url = f"http://{HOST}/bucket/{percent_encode(key, safe='/~')}"
    if query:
        url += "?" + percent_encode_sequence(query)
    body = payload if isinstance(payload, bytes) else b"data"
    context: dict[str, object] = {}
    if payload == "UNSIGNED-PAYLOAD":  # what boto3 does over TLS when told not to hash bodies
        url = "https" + url[4:]
        context["client_config"] = SimpleNamespace(s3={"payload_signing_enabled": False})
    elif payload == "STREAMING-UNSIGNED-PAYLOAD-TRAILER":
        context["checksum"] = {"request_algorithm": {"in": "trailer", "name": "crc32"}}
    request = AWSRequest(method=method, url=url, data=body)
    request.context.update(context)
    for name, value in extra:  # HTTPHeaders keeps repeated names as separate values
        request.headers[name] = value
    S3SigV4Auth(Credentials(cred.access_key_id, cred.secret_access_key), "s3", region).add_auth(
        request
    )
    parts = urlsplit(request.prepare().url)
    assert parts.netloc == HOST
    query_pairs = []
    for piece in parts.query.split("&") if parts.query else []:
        name, _, value = piece.partition("=")
        query_pairs.append((unquote(name, errors="strict"), unquote(value, errors="strict")))
    # An HTTP parser drops the whitespace around a field value.
    headers = [("Host", HOST)] + [(k, v.strip(" \t")) for k, v in request.headers.items()]
    return Wire(method, parts.path, query_pairs, headers)


def refused(wire: Wire, now: dt.datetime | None = None) -> S3Error:
    with pytest.raises(S3Error) as caught:
        wire.verify(now=now)
    return caught.value


# -- a known answer ------------------------------------------------------------------------------

KAT_WHEN = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
KAT_PATH = "/bucket/env%3A/dev%20stage/k%C3%A9y~%2B%3D%25.tfstate"
KAT_QUERY = [("versionId", ""), ("tag", "b"), ("tag", "a"), ("ünï", "v a+l/")]
KAT_HEADERS = [
    ("Host", HOST),
    ("X-Amz-Date", "20240501T120000Z"),
    ("X-Amz-Content-SHA256", "UNSIGNED-PAYLOAD"),
    ("X-Amz-Meta-Note", "  two   spaces\tand a tab "),
    ("X-Amz-Meta-Note", "second"),
    ("Content-Type", "application/json"),
]
# Computed once with botocore 1.43 S3SigV4Auth on the request above; both sides must still agree.
KAT_SIGNATURE = "bcd4112c8069ee51058cbba14850aa66290be0129d6f51393778ac32cff89702"


def botocore_signature(method: str, path: str, query: list[tuple[str, str]]) -> tuple[str, str]:
    """(signed header names, signature) for the KAT request, at KAT_WHEN, by botocore."""
    request = AWSRequest(method=method, url=f"http://{HOST}{path}", params=query)
    for name, value in KAT_HEADERS:
        request.headers[name] = value
    request.context["timestamp"] = "20240501T120000Z"
    signer = S3SigV4Auth(Credentials(ADMIN.access_key_id, ADMIN.secret_access_key), "s3", "eu")
    canonical = signer.canonical_request(request)
    names = signer.signed_headers(signer.headers_to_sign(request))
    return names, signer.signature(signer.string_to_sign(request, canonical), request)


def kat_wire(signature: str) -> list[tuple[str, str]]:
    names, _ = botocore_signature("PUT", KAT_PATH, KAT_QUERY)
    auth = (
        f"AWS4-HMAC-SHA256 Credential={ADMIN.access_key_id}/20240501/eu/s3/aws4_request, "
        f"SignedHeaders={names}, Signature={signature}"
    )
    return [*KAT_HEADERS, ("Authorization", auth)]


def test_known_answer_both_header_types() -> None:
    names, signature = botocore_signature("PUT", KAT_PATH, KAT_QUERY)
    assert names == "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-note"
    assert signature == KAT_SIGNATURE
    wire = Wire("PUT", KAT_PATH, KAT_QUERY, kat_wire(signature))
    assert wire.verify(now=KAT_WHEN).content_sha256 == "UNSIGNED-PAYLOAD"
    # the stdlib server's email.message.Message works too
    raw = "".join(f"{k}: {v}\r\n" for k, v in wire.headers) + "\r\n"
    message = email.parser.Parser().parsestr(raw)
    lookup = {ADMIN.access_key_id: ADMIN}.get
    args = {"method": "PUT", "raw_path": KAT_PATH, "query": KAT_QUERY, "lookup": lookup}
    assert sigv4.verify(headers=message, now=KAT_WHEN, **args).credential == ADMIN
    # '#' and what follows it are part of the signed path, not dropped
    with pytest.raises(SignatureDoesNotMatch):
        sigv4.verify(headers=message, now=KAT_WHEN, **{**args, "raw_path": KAT_PATH + "#x"})
    with pytest.raises(RequestTimeTooSkewed):
        wire.verify(now=KAT_WHEN + sigv4.MAX_SKEW + dt.timedelta(seconds=1))


def test_cached_signing_key_never_crosses_secrets() -> None:
    rotated = replace(ADMIN, secret_access_key=ADMIN.secret_access_key + "2")
    old = boto3_request("GET", "k", [], [])
    new = boto3_request("GET", "k", [], [], cred=rotated)
    for _ in range(2):  # the second round answers from the cache
        assert old.verify(ADMIN).credential == ADMIN
        assert new.verify(rotated).credential == rotated
        with pytest.raises(SignatureDoesNotMatch):
            old.verify(rotated)
        with pytest.raises(SignatureDoesNotMatch):
            new.verify(ADMIN)


def test_refusals_before_the_signature() -> None:
    wire = boto3_request("PUT", "k", [], [("x-amz-meta-a", "1")], payload=b"x")
    i_auth = next(i for i, (k, _) in enumerate(wire.headers) if k == "Authorization")
    auth = wire.headers[i_auth][1]
    no_auth = replace(wire, headers=[h for h in wire.headers if h[0] != "Authorization"])
    assert "anonymous" in refused(no_auth).message
    presigned = replace(no_auth, query=[("X-Amz-Signature", "00")])
    assert "presigned" in refused(presigned).message
    assert isinstance(refused(wire.with_header(i_auth, "AWS abc:def")), AccessDenied)
    assert isinstance(refused(wire.with_header(i_auth, auth.replace("/s3/", "/s4/"))), S3Error)
    unknown = wire.with_header(i_auth, auth.replace(ADMIN.access_key_id, "AKIDNOBODY"))
    assert isinstance(refused(unknown), InvalidAccessKeyId)
    unsorted = auth.replace("host;x-amz-content-sha256", "x-amz-content-sha256;host")
    assert isinstance(refused(wire.with_header(i_auth, unsorted)), SignatureDoesNotMatch)
    no_host = auth.replace("SignedHeaders=host;", "SignedHeaders=")
    assert "must be signed" in refused(wire.with_header(i_auth, no_host)).message
    extra = replace(wire, headers=[*wire.headers, ("X-Amz-Meta-Sneaky", "1")])
    assert isinstance(refused(extra), AccessDenied)
    tolerated = replace(wire, headers=[*wire.headers, ("X-Amz-User-Agent", "aws-sdk-go")])
    assert tolerated.verify().credential == ADMIN
    missing = replace(wire, headers=[h for h in wire.headers if h[0] != "x-amz-meta-a"])
    assert "missing" in refused(missing).message
    i_sha = next(i for i, (k, _) in enumerate(wire.headers) if k == "X-Amz-Content-SHA256")
    assert isinstance(refused(wire.with_header(i_sha, "STREAMING-AWS4")), InvalidRequest)
    no_sha = replace(wire, headers=[h for h in wire.headers if h[0] != "X-Amz-Content-SHA256"])
    assert isinstance(refused(no_sha), S3Error)


# -- the property ---------------------------------------------------------------------------------

PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
NONSPACE = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
ANY_TEXT_CHAR = st.characters(codec="utf-8")
TRICKY = st.sampled_from(" :=+%~/&?#é✓")
KEYS = st.text(st.one_of(TRICKY, ANY_TEXT_CHAR), min_size=1, max_size=24)
QUERY_NAMES = st.one_of(st.sampled_from(["versionId", "tag", "x"]), st.text(TRICKY, min_size=1))
QUERY = st.lists(
    st.tuples(QUERY_NAMES, st.text(st.one_of(TRICKY, ANY_TEXT_CHAR), max_size=8)), max_size=4
)
HEADER_NAMES = st.sampled_from(
    ["x-amz-meta-a", "X-Amz-Meta-B", "x-amz-tagging", "Content-Type", "content-md5", "If-Match"]
)
HEADER_VALUES = st.text(st.one_of(PRINTABLE, st.sampled_from("  \t")), max_size=16)
PAYLOADS = st.one_of(
    st.binary(max_size=64), st.sampled_from(["UNSIGNED-PAYLOAD", sigv4.PAYLOAD_MARKERS[1]])
)


def change_one(data: st.DataObject, text: str, chars: st.SearchStrategy[str]) -> str:
    """``text`` with one character replaced by a different one from ``chars`` (or one such
    character alone if ``text`` is empty)."""
    if not text:
        return data.draw(chars)
    at = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
    to = data.draw(chars.filter(lambda c: c != text[at]))
    return text[:at] + to + text[at + 1 :]


@settings(max_examples=200, deadline=None)
@given(
    method=st.sampled_from(METHODS),
    key=KEYS,
    query=QUERY,
    extra=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=4),
    payload=PAYLOADS,
    region=st.sampled_from(["us-east-1", "eu-west-3"]),
    data=st.data(),
)
def test_botocore_signed_requests_verify_and_every_signed_byte_counts(
    method: str,
    key: str,
    query: list[tuple[str, str]],
    extra: list[tuple[str, str]],
    payload: bytes | str,
    region: str,
    data: st.DataObject,
) -> None:
    wire = boto3_request(method, key, query, extra, payload=payload, region=region)
    assert wire.verify().credential == ADMIN
    pick = data.draw(st.integers(min_value=0, max_value=10_000))

    def bad_signature(changed: Wire, now: dt.datetime | None = None) -> bool:
        return isinstance(refused(changed, now), SignatureDoesNotMatch)

    # the path, byte for byte (no decoding, no normalization)
    assert bad_signature(replace(wire, raw_path=change_one(data, wire.raw_path, NONSPACE)))
    # a query value (or a pair appearing)
    pairs = list(wire.query) or [("x", "")]
    if wire.query:
        name, value = pairs[pick % len(pairs)]
        pairs[pick % len(pairs)] = (name, change_one(data, value, ANY_TEXT_CHAR))
    assert bad_signature(replace(wire, query=pairs))
    # a signed header's value (not date/payload hash: those have their own refusals below)
    special = ("authorization", "x-amz-date", "x-amz-content-sha256")
    candidates = [i for i, (name, _) in enumerate(wire.headers) if name.lower() not in special]
    index = candidates[pick % len(candidates)]
    old_value = wire.headers[index][1]
    new_value = change_one(data, old_value, NONSPACE) if old_value.strip() else "x"
    assert bad_signature(wire.with_header(index, new_value))
    # the method
    other = data.draw(st.sampled_from([m for m in METHODS if m != method]))
    assert bad_signature(replace(wire, method=other))
    # the payload hash: another valid value is a bad signature, anything else a bad header
    i_sha = next(i for i, (k, _) in enumerate(wire.headers) if k == "X-Amz-Content-SHA256")
    sha = wire.headers[i_sha][1]
    valid = [m for m in sigv4.PAYLOAD_MARKERS if m != sha]
    if sha not in sigv4.PAYLOAD_MARKERS:
        valid.append(change_one(data, sha, st.sampled_from("0123456789abcdef")))
    for value in valid:
        assert bad_signature(wire.with_header(i_sha, value))
    not_hex = change_one(data, sha, st.sampled_from("GZ-A "))
    assert isinstance(refused(wire.with_header(i_sha, not_hex)), InvalidRequest)
    # the date: any character changed is refused; a second later is a bad signature
    i_date = next(i for i, (k, _) in enumerate(wire.headers) if k == "X-Amz-Date")
    stamp = wire.headers[i_date][1]
    changed = change_one(data, stamp, st.sampled_from(string.digits))
    assert isinstance(refused(wire.with_header(i_date, changed), wire.when), SIGNED_DATE_REFUSALS)
    later = (wire.when + dt.timedelta(seconds=1)).strftime("%Y%m%dT%H%M%SZ")
    assert bad_signature(wire.with_header(i_date, later), wire.when)
