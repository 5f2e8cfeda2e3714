"""Fuzzing with valid signatures: random sequences of S3 operations by four credentials.

Each example starts from an empty bucket (the admin erases every version and upload) and two
writes, then runs three to twelve operations (put, get, head, delete, list, list-versions,
multipart create/part/complete/abort) with conditional and Range headers, right and wrong digests,
odd keys, and stage credentials crossing workspaces. After every request the admin's view of the
bucket (every version with its ETag and size, and the unfinished uploads when ListMultipartUploads
is served) is compared: a refused request changed nothing, an accepted write reads back exactly,
reads follow S3's rules. Settings and replay notes as in ``test_state_fuzz``.
"""

from __future__ import annotations

import base64
import hashlib
import re
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from typing import Any, NamedTuple
from urllib.parse import quote, unquote

import pytest
from conftest import BUCKET, Running, raw_request
from hypothesis import example, given, note
from hypothesis import strategies as st
from test_state_fuzz import acceptable, profile, serve

KEYS = ["env:/a/state", "env:/a/odd #?%+ é", "env:/a/x.tflock", "env:/b/state", "top/level",
        "env:/a/../b/state", "env:/a/\x01ctl", "env:/a/" + "k" * 1100]  # fmt: skip
STATE = b'{"version": 4, "serial": 1, "lineage": "l", "outputs": {"o": {"value": 1}}}'
RANGES = [None, "bytes=0-0", "bytes=1-3", "bytes=2-", "bytes=-2", "bytes=-0", "bytes=0-1000",
          "bytes=1000-", "bytes=1_0-2_0", "bytes=+1-2", "bytes=0-1,2-3", "bytes=5-1",
          "bytes=0x1-0x2", "items=0-1", "bytes=" + "9" * 5000 + "-", "bytes=-" + "9" * 5000,
          "bytes=0-" + "9" * 5000, "bytes=" + "0" * 5000 + "1-2"]  # fmt: skip
KINDS = ["put", "get", "head", "delete", "list", "versions", "create", "part", "complete", "abort"]


class Op(NamedTuple):
    kind: str
    key: int
    who: str
    body: bytes
    cond: str  # "", "none-match-*", "match-latest", "match-bogus", "none-match-latest"
    check: str  # "", "sha256", "crc32", "md5" (right) / "bad-…" (wrong) / "bad-payload-hash"
    rng: str | None
    n: int  # part number / upload index / completion variant


ops = st.builds(
    Op,
    # each field: the usual half the time, anything the other half (refusals need successes)
    kind=st.sampled_from(KINDS),
    key=st.integers(0, 1) | st.integers(0, len(KEYS) - 1),
    who=st.sampled_from(["admin", "a"]) | st.sampled_from(["admin", "a", "b", "reader"]),
    body=st.binary(max_size=40) | st.just(STATE),
    cond=st.just("")
    | st.sampled_from(["none-match-*", "match-latest", "match-bogus", "none-match-latest"]),
    check=st.sampled_from(["", "sha256", "crc32", "md5"])
    | st.sampled_from(["bad-sha256", "bad-crc32", "bad-md5", "bad-payload-hash"]),
    rng=st.sampled_from(RANGES),
    n=st.integers(0, 3),
)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def declared(check: str, body: bytes) -> tuple[dict[str, str], str | None]:
    """Digest headers for ``body`` (of other bytes for "bad-…"), and the payload hash to send."""
    data = body + b"!" if check.startswith("bad-") else body
    algo = check.removeprefix("bad-")
    if algo == "payload-hash":
        return {}, hashlib.sha256(data).hexdigest()
    return {
        "sha256": {"x-amz-checksum-sha256": b64(hashlib.sha256(data).digest())},
        "crc32": {"x-amz-checksum-crc32": b64(zlib.crc32(data).to_bytes(4, "big"))},
        "md5": {"Content-MD5": b64(hashlib.md5(data).digest())},
    }.get(algo, {}), None


def expected_range(spec: str, size: int) -> tuple[int, int] | str:
    """S3's reading of a Range header: (first, last), "full" (ignored) or "416"."""
    m = re.fullmatch(r"bytes=([0-9]*)-([0-9]*)", spec)
    if not m or not (m[1] or m[2]):
        return "full"
    if not m[1]:
        n = number(m[2])
        return "416" if n == 0 or size == 0 else (max(0, size - n), size - 1)
    first, last = number(m[1]), number(m[2]) if m[2] else size - 1
    if m[2] and last < first:
        return "full"
    return "416" if first >= size else (first, min(last, size - 1))


def number(digits: str) -> int:
    """A Range number's value; past Python's conversion limit a stand-in larger than any size
    (the fuzzed ranges never hold two such numbers to order)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) < 4000 else 10**4000


def xml_items(body: bytes, tag: str) -> list[dict[str, str]]:
    return [
        {c.tag.rsplit("}", 1)[-1]: c.text or "" for c in el}
        for el in ET.fromstring(body).iter()
        if el.tag.rsplit("}", 1)[-1] == tag
    ]


class Snap(NamedTuple):
    versions: frozenset[tuple[str, str, bool, str, int]]  # key, id, latest, etag, size (-1: marker)
    uploads: frozenset[tuple[str, str]]

    def latest(self, key: str) -> tuple[str, str, int] | None:
        found = [(v, e, s) for k, v, latest, e, s in self.versions if k == key and latest]
        return found[0] if found and found[0][2] >= 0 else None


class Ctx:
    """The admin's view of the bucket, and what this example wrote (to read it back)."""

    def __init__(self, running: Running, creds: dict[str, Any], listable: bool) -> None:
        self.endpoint, self.creds, self.listable = running.endpoint, creds, listable
        self.contents: dict[str, bytes] = {}
        self.uploads: list[tuple[str, str]] = []
        self.parts: dict[str, dict[int, tuple[bytes, str]]] = {}

    def send(self, who: str, method: str, path: str, quiet: bool = False, **kw: Any) -> Any:
        if not quiet:
            args = ", ".join(f"{k}={v!r}" for k, v in kw.items() if v)
            note(f"replay: raw_request(endpoint, {method!r}, {path!r}, creds[{who!r}], {args})")
        resp = raw_request(self.endpoint, method, path, self.creds[who], **kw)
        assert acceptable(resp.status), (method, path, resp.status, resp.body[:300])
        return resp

    def snapshot(self) -> Snap:
        resp = self.send("admin", "GET", f"/{BUCKET}?versions&encoding-type=url", quiet=True)
        assert resp.status == 200 and b"<IsTruncated>true" not in resp.body, resp.body[:300]
        versions = {
            (
                unquote(v["Key"]),
                v["VersionId"],
                v["IsLatest"] == "true",
                v.get("ETag", ""),
                int(v.get("Size", "-1")),
            )
            for tag in ("Version", "DeleteMarker")
            for v in xml_items(resp.body, tag)
        }
        uploads: set[tuple[str, str]] = set()
        if self.listable:
            resp = self.send("admin", "GET", f"/{BUCKET}?uploads&encoding-type=url", quiet=True)
            assert resp.status == 200, resp.body[:300]
            uploads = {(unquote(u["Key"]), u["UploadId"]) for u in xml_items(resp.body, "Upload")}
        return Snap(frozenset(versions), frozenset(uploads))

    def reset(self) -> Snap:
        snap = self.snapshot()
        for key, vid, *_ in snap.versions:
            self.send("admin", "DELETE", obj(key, f"versionId={vid}"), quiet=True)
        for key, uid in snap.uploads | set(self.uploads):
            self.send("admin", "DELETE", obj(key, f"uploadId={uid}"), quiet=True)
        self.uploads.clear()
        snap = self.snapshot()
        assert not snap.versions and not snap.uploads, snap
        return snap

    def expect_latest(self, snap: Snap, key: str, vid: str, data: bytes) -> None:
        self.contents[vid] = data
        assert snap.latest(key) is not None and snap.latest(key)[:1] == (vid,), (key, vid, snap)
        got = self.send("admin", "GET", obj(key, f"versionId={vid}"), quiet=True)
        assert (got.status, got.body) == (200, data), "an accepted write does not read back"


def obj(key: str, query: str = "") -> str:
    return f"/{BUCKET}/{quote(key, safe='/')}" + (f"?{query}" if query else "")


def may_write(who: str, key: str) -> bool:
    return who == "admin" or (who in ("a", "b") and key.startswith(f"env:/{who}/"))


def cond_headers(cond: str, latest: tuple[str, str, int] | None) -> dict[str, str]:
    etag = latest[1] if latest else '"0123456789abcdef0123456789abcdef"'
    return {
        "none-match-*": {"If-None-Match": "*"},
        "match-latest": {"If-Match": etag},
        "match-bogus": {"If-Match": '"bogus"'},
        "none-match-latest": {"If-None-Match": etag},
    }.get(cond, {})


def write_condition_held(cond: str, latest: tuple[str, str, int] | None) -> bool:
    return {"none-match-*": latest is None, "match-latest": latest is not None}.get(
        cond, cond != "match-bogus"
    )


def step(ctx: Ctx, op: Op, before: Snap) -> Snap:
    """Run one operation and check it; returns the admin's view afterwards."""
    key, who = KEYS[op.key], op.who
    latest = before.latest(key)
    if op.kind in ("get", "head"):
        return read(ctx, op, before)
    if op.kind in ("list", "versions"):
        prefix = ["", "env:/", "env:/a/", "env:/b/"][op.n]
        sub = "list-type=2" if op.kind == "list" else "versions"
        ctx.send(who, "GET", f"/{BUCKET}?{sub}&prefix={quote(prefix, safe='')}")
        assert ctx.snapshot() == before, "a listing changed the bucket"
        return before
    upload = ctx.uploads[op.n % len(ctx.uploads)] if ctx.uploads else (key, "no-such-upload")
    hdrs, payload_hash = declared(op.check, op.body)
    hdrs.update(cond_headers(op.cond, latest))
    body, data = op.body, op.body
    if op.kind == "put":
        path = obj(key)
    elif op.kind == "delete":
        vid = {1: latest[0] if latest else "", 2: "bogus-version"}.get(op.n, "")
        path, hdrs, payload_hash = obj(key, f"versionId={vid}" if vid else ""), {}, None
    elif op.kind == "create":
        path, body, hdrs, payload_hash = obj(key, "uploads"), b"", {}, None
    elif op.kind == "part":
        key, number = upload[0], op.key % 3 + 1
        path = obj(key, f"partNumber={number}&uploadId={upload[1]}")
        hdrs = {k: v for k, v in hdrs.items() if not k.startswith("If-")}
    elif op.kind == "complete":
        key, parts = upload[0], sorted(ctx.parts.get(upload[1], {}).items())
        chosen = parts[:1] if op.key % 4 == 0 else parts
        etags = [('"bogus"' if op.key % 4 == 2 else e) for _, (_, e) in chosen] or ['"x"']
        numbers = [n + (op.key % 4 == 3) for n, _ in chosen] or [1]
        body = (
            b"<CompleteMultipartUpload>"
            + b"".join(
                b"<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>" % (n, e.encode())
                for n, e in zip(numbers, etags, strict=True)
            )
            + b"</CompleteMultipartUpload>"
        )
        data = b"".join(d for _, (d, _) in chosen)
        path, payload_hash = obj(key, f"uploadId={upload[1]}"), None
        hdrs = cond_headers(op.cond, before.latest(key))
    else:  # abort
        key, path, hdrs, payload_hash = upload[0], obj(upload[0], f"uploadId={upload[1]}"), {}, None
    method = {"put": "PUT", "part": "PUT", "create": "POST", "complete": "POST"}.get(op.kind)
    length = {"Content-Length": str(len(body))} if method else None
    resp = ctx.send(who, method or "DELETE", path, headers=hdrs, body=body,
                    payload_hash=payload_hash, send_headers=length)  # fmt: skip
    after = ctx.snapshot()
    if resp.status >= 300:
        assert after == before, f"refused ({resp.status} {resp.code}) yet the bucket changed"
        return after
    assert may_write(who, key), f"{who} wrote {key!r} ({resp.status})"
    if op.kind in ("put", "part"):
        assert not op.check.startswith("bad-"), f"a wrong digest was accepted ({op.check})"
    if op.kind in ("put", "complete"):
        assert write_condition_held(op.cond, before.latest(key)), f"{op.cond} ignored"
        ctx.expect_latest(after, key, resp.headers["x-amz-version-id"], data)
    if op.kind == "complete":
        assert op.key % 4 in (0, 1), "a completion with a wrong part list was accepted"
    if op.kind in ("complete", "abort"):
        ctx.uploads.remove(upload)
        assert upload not in after.uploads
    elif op.kind == "create":
        uid = re.search(rb"<UploadId>([^<]+)</UploadId>", resp.body)
        assert uid, resp.body
        ctx.uploads.append((key, uid.group(1).decode()))
        assert not ctx.listable or ctx.uploads[-1] in after.uploads
    elif op.kind == "part":
        ctx.parts.setdefault(upload[1], {})[number] = (op.body, resp.headers["etag"])
    elif op.kind == "delete" and "versionId=" in path:
        assert who == "admin", "only admin may erase a version"
        assert all(v[1] != path.rsplit("=", 1)[1] for v in after.versions), "version not erased"
    elif op.kind == "delete":
        assert after.latest(key) is None, "a deleted key still reads"
    if op.kind in ("part", "create"):
        assert after.versions == before.versions
    return after


def read(ctx: Ctx, op: Op, before: Snap) -> Snap:
    """GET or HEAD: never a change; what a reader with full access sees follows S3's rules."""
    key, who = KEYS[op.key], op.who
    latest = before.latest(key)
    method = "GET" if op.kind == "get" else "HEAD"
    hdrs = cond_headers(op.cond, latest) | ({"Range": op.rng} if op.rng else {})
    resp = ctx.send(who, method, obj(key), headers=hdrs)
    assert ctx.snapshot() == before, "a read changed the bucket"
    if who == "reader" and resp.status == 200 and method == "GET" and not hdrs:
        redacted_view_agrees(ctx, key, resp)
    if not may_write(who, key) or resp.status in (400, 403):
        return before  # no full read access, or a key the server refuses outright
    content = ctx.contents[latest[0]] if latest else None
    if content is None:
        assert resp.status == 404, f"{resp.status} for a key that does not exist"
        return before
    wanted: tuple[int, int] | str = expected_range(op.rng, len(content)) if op.rng else "full"
    if op.cond == "match-bogus":
        wanted = "412"
    elif op.cond.startswith("none-match"):
        wanted = "304"
    if isinstance(wanted, tuple):
        first, last = wanted
        assert resp.status == 206, f"{op.rng} on {len(content)} bytes: {resp.status}, not 206"
        assert resp.headers["content-range"] == f"bytes {first}-{last}/{len(content)}"
        assert method == "HEAD" or resp.body == content[first : last + 1]
    else:
        status = {"full": 200}.get(wanted) or int(wanted)
        assert resp.status == status, f"{op.rng} {op.cond}: {resp.status}, wanted {status}"
        assert status != 200 or method == "HEAD" or resp.body == content, "GET body differs"
    return before


def redacted_view_agrees(ctx: Ctx, key: str, got: Any) -> None:
    """Issue #13 item 5: an outputs-only reader's HEAD and listing describe the redacted GET."""
    shown = (got.headers["etag"], len(got.body))
    head = ctx.send("reader", "HEAD", obj(key))
    assert (head.headers.get("etag"), int(head.headers.get("content-length", -1))) == shown
    listing = ctx.send("reader", "GET", f"/{BUCKET}?list-type=2&prefix={quote(key, safe='')}")
    rows = [(r["ETag"], int(r["Size"])) for r in xml_items(listing.body, "Contents")]
    assert rows == [shown], f"the listing shows {rows}, the redacted GET {shown}"


@pytest.fixture(scope="module")
def ops_ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    for running in serve(tmp_path_factory.mktemp("ops")):
        issue = running.issue
        creds = {
            "admin": running.admin,
            "a": issue(policy="stage", stage="a"),
            "b": issue(policy="stage", stage="b"),
            "reader": issue(policy="stage", stage="r", read_outputs=["a"]),
        }
        probe = raw_request(running.endpoint, "GET", f"/{BUCKET}?uploads", running.admin)
        assert probe.status in (200, 501), probe.body[:300]
        yield Ctx(running, creds, listable=probe.status == 200)


def _op(kind: str, key: int, who: str, body: bytes = b"", **kw: Any) -> Op:
    return Op(kind, key, who, body, kw.get("cond", ""), kw.get("check", ""), kw.get("rng"), 0)


SEED = [_op("put", 0, "admin", STATE), _op("put", 1, "a", b"0123456789")]  # something to read
RANGES_AS_S3 = [  # bytes=1_0-2_0 and bytes=+1-2 are ignored (a full 200); long numbers
    _op("put", 0, "admin", b"0123456789" * 3),
    *(_op("get", 0, "admin", rng=r) for r in ("bytes=1_0-2_0", "bytes=+1-2", "bytes=-5")),
    *(_op("get", 0, "admin", rng=r) for r in RANGES[-4:]),  # numbers of 5,000 digits
]
CROSSING = [  # stages crossing workspaces; the outputs-only reader's views agree
    _op("put", 3, "a", STATE),
    _op("create", 3, "b"),
    _op("put", 0, "a", STATE),
    _op("get", 0, "reader"),
]
PARTS = [  # digests on parts, a conditional completion
    _op("create", 0, "a"),
    _op("part", 1, "a", b"p", check="bad-crc32"),
    _op("part", 1, "a", b"p", check="crc32"),
    _op("complete", 0, "a", cond="none-match-*"),
]


@profile(200)
@example(ops=RANGES_AS_S3)
@example(ops=CROSSING)
@example(ops=PARTS)
@given(ops=st.lists(ops, min_size=3, max_size=12))
def test_s3_operation_fuzz(ops_ctx: Ctx, ops: list[Op]) -> None:
    before = ops_ctx.reset()
    for i, op in enumerate(SEED + ops):
        note(f"step {i}: {op!r}")
        before = step(ops_ctx, op, before)
