"""The certificate go-plugin's AutoMTLS needs from a provider plugin, cached per home.

Generating a key costs the ``cryptography`` import on every provider start; Terraform starts each
provider several times per command, so the material is kept (mode 0600) for a month.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
from pathlib import Path

from localcloud.providers.standin import HOME_ENV
from localcloud.store import write_json_atomic

CERT_DAYS = 30


def tls_material(cache: Path | None) -> tuple[bytes, bytes, bytes]:
    """(key PEM, cert PEM, cert DER) for go-plugin's AutoMTLS; cached to skip the crypto import."""
    if cache is not None:
        try:
            data = json.loads(cache.read_text())
            if float(data["not_after"]) > time.time() + 86400:
                return (
                    data["key"].encode(),
                    data["cert"].encode(),
                    base64.b64decode(data["der"]),
                )
        except (OSError, ValueError, KeyError):
            pass
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    der = cert.public_bytes(serialization.Encoding.DER)
    if cache is not None:
        material = {
            "key": key_pem.decode(),
            "cert": cert_pem.decode(),
            "der": base64.b64encode(der).decode(),
            "not_after": (now + timedelta(days=CERT_DAYS)).timestamp(),
        }
        with contextlib.suppress(OSError):  # a cache: the next start makes another
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(cache, material, mode=0o600, indent=None)
    return key_pem, cert_pem, der


def tls_cache_path() -> Path | None:
    home = os.environ.get(HOME_ENV)
    return Path(home) / "local" / "providers" / "plugin-tls.json" if home else None
