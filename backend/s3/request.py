"""What an S3 operation is handed: the request, authenticated and authorized, body read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend.http.message import Headers
from backend.payload import Payload

if TYPE_CHECKING:
    from backend.limits import Limits
    from backend.s3.credentials import Credential
    from backend.s3.policy import Access
    from backend.store.quota import Quota
    from backend.store.store import Store


@dataclass
class S3Request:
    op: str
    method: str
    bucket: str
    key: str
    params: dict[str, str]
    headers: Headers
    payload: Payload
    access: Access
    store: Store
    limits: Limits
    quota: Quota | None = None
    # the authenticated credential: listings and HEAD show each key as its GET would
    cred: Credential | None = None
