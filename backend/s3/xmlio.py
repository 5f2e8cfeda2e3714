"""S3's XML: writing responses by hand (fast, no tree) and reading untrusted bodies safely.

Request bodies come from the network, so they are parsed with defusedxml only (no DTDs, no
entities, no external references), after a size check.
"""

from __future__ import annotations

import datetime as dt
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from backend.errors import MalformedXML

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_XML_BYTES = 2 * 1024 * 1024
MAX_DELETE_KEYS = 1000  # DeleteObjects: S3's limit per request


def iso(ts: float) -> str:
    """S3's timestamp format in XML bodies."""
    stamp = dt.datetime.fromtimestamp(ts, dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def http_date(ts: float) -> str:
    """RFC 7231 date for Last-Modified."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def el(name: str, value: object) -> str:
    """One leaf element; values are escaped."""
    text = ("true" if value else "false") if isinstance(value, bool) else escape(str(value))
    return f"<{name}>{text}</{name}>"


def document(root: str, inner: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{NS}">{inner}</{root}>'
    ).encode()


def error_document(code: str, message: str, extra: dict[str, str]) -> bytes:
    inner = el("Code", code) + el("Message", message)
    inner += "".join(el(k, v) for k, v in extra.items())
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{inner}</Error>'.encode()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse(body: bytes) -> Element:
    """Parse an untrusted XML body or raise MalformedXML."""
    if len(body) > MAX_XML_BYTES:
        raise MalformedXML("XML body too large")
    try:
        root: Element = SafeET.fromstring(body)
    except (ParseError, DefusedXmlException, ValueError, UnicodeError):
        raise MalformedXML() from None
    return root


def complete_parts(body: bytes) -> list[tuple[int, str, dict[str, str]]]:
    """(part number, etag, checksums) from a CompleteMultipartUpload body."""
    root = parse(body)
    if _local(root.tag) != "CompleteMultipartUpload":
        raise MalformedXML()
    parts: list[tuple[int, str, dict[str, str]]] = []
    for part in root:
        if _local(part.tag) != "Part":
            raise MalformedXML()
        fields = {_local(child.tag): (child.text or "").strip() for child in part}
        try:
            number = int(fields["PartNumber"])
        except (KeyError, ValueError):
            raise MalformedXML() from None
        checksums = {
            name[len("Checksum") :].lower(): value
            for name, value in fields.items()
            if name.startswith("Checksum") and name != "ChecksumType"
        }
        parts.append((number, fields.get("ETag", "").strip('"'), checksums))
    if not parts:
        raise MalformedXML()
    return parts


def delete_request(body: bytes) -> tuple[list[tuple[str, str | None]], bool]:
    """((key, version id or None) in order, quiet) from a DeleteObjects body; 1 to 1,000 keys."""
    root = parse(body)
    if _local(root.tag) != "Delete":
        raise MalformedXML()
    quiet = False
    items: list[tuple[str, str | None]] = []
    for child in root:
        name = _local(child.tag)
        if name == "Quiet":
            quiet = (child.text or "").strip().lower() == "true"
        elif name == "Object":
            fields = {_local(f.tag): f.text or "" for f in child}
            if "Key" not in fields:
                raise MalformedXML()
            items.append((fields["Key"], fields.get("VersionId") or None))
        else:
            raise MalformedXML()
        if len(items) > MAX_DELETE_KEYS:
            raise MalformedXML(f"DeleteObjects takes at most {MAX_DELETE_KEYS} keys")
    if not items:
        raise MalformedXML()
    return items, quiet


def versioning_status(body: bytes) -> tuple[str, str | None]:
    """(Status, MfaDelete or None) from a PutBucketVersioning body."""
    root = parse(body)
    if _local(root.tag) != "VersioningConfiguration":
        raise MalformedXML()
    fields = {_local(child.tag): (child.text or "").strip() for child in root}
    return fields.get("Status", ""), fields.get("MfaDelete")


def check_well_formed(body: bytes) -> None:
    """Bodies we ignore (CreateBucketConfiguration) must still be safe, well-formed XML."""
    if body.strip():
        parse(body)
