"""A schema-driven tfplugin6 provider server that Terraform starts like any provider binary.

Terraform talks to a provider over gRPC after a go-plugin handshake line on stdout. The stand-ins
only supply per-type handlers (create/read/update/delete against the local control planes); the
protocol work is generic and driven by the real provider's schema snapshot:

- a create plan marks every computed attribute the config leaves null as unknown;
- an update plan keeps Terraform's proposed state and asks for replacement when an attribute
  listed in the handler's ``replace_on`` changes (the snapshot carries no plan modifiers);
- apply keeps every planned known value and fills unknowns from what the handler reports, so
  Terraform never sees an "inconsistent result";
- a handler's ``read`` returning None says "gone", and Terraform plans a create, as the real
  providers do after a 404.

The PyPI package ``tf`` provides the generated tfplugin6 stubs and the msgpack wire format;
its own resource framework cannot express nested attributes, so it is not used.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent import futures
from pathlib import Path
from typing import Any, ClassVar

import grpc
from tf.gen import grpc_controller_pb2 as controller_pb
from tf.gen import grpc_controller_pb2_grpc as controller_rpc
from tf.gen import grpc_stdio_pb2_grpc as stdio_rpc
from tf.gen import tfplugin_pb2 as pb
from tf.gen import tfplugin_pb2_grpc as rpc
from tf.types import Unknown
from tf.utils import read_dynamic_value, to_dynamic_value

from localcloud.providers.schema import (
    ProviderSchema,
    SchemaError,
    TypeSchema,
    Value,
    has_unknown,
    load_snapshot,
    mark_computed_unknown,
    normalize,
    resolve,
    to_pb,
)

HOME_ENV = "FORKSTAGE_HOME"
# go-plugin's handshake for Terraform providers (public constants of the plugin protocol).
MAGIC_COOKIE_KEY = "TF_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE_VALUE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"
CERT_DAYS = 30


class ProviderError(Exception):
    """A failure Terraform shows as an error diagnostic (summary, detail, attribute)."""

    def __init__(self, summary: str, detail: str = "", attribute: str | None = None) -> None:
        super().__init__(summary)
        self.summary = summary
        self.detail = detail
        self.attribute = attribute


def known(value: Value) -> Value:
    """``value`` with every part that is still unknown (at plan time) as None."""
    return resolve(Unknown, value)


class Resource:
    """One resource type of a stand-in, bound to its local control plane."""

    replace_on: ClassVar[frozenset[str]] = frozenset()
    # Computed attributes a real in-place update changes (timestamps, etags): unknown in plans.
    recompute_on_update: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    @classmethod
    def validate(cls, config: dict[str, Value]) -> None:
        """Raise ProviderError for a config the real provider rejects before any API call."""

    def create(self, planned: dict[str, Value]) -> dict[str, Value]:
        raise NotImplementedError

    def read(self, current: dict[str, Value]) -> dict[str, Value] | None:
        raise NotImplementedError

    def update(self, prior: dict[str, Value], planned: dict[str, Value]) -> dict[str, Value]:
        return planned

    def delete(self, prior: dict[str, Value]) -> None:
        raise NotImplementedError


class DataSource:
    def __init__(self, backend: Any) -> None:
        self.backend = backend

    @classmethod
    def validate(cls, config: dict[str, Value]) -> None:
        """Raise ProviderError for a config the real provider rejects."""

    def read(self, config: dict[str, Value]) -> dict[str, Value]:
        raise NotImplementedError


class StandIn:
    """What one stand-in provider is: its snapshot, its handlers and how to reach its backend."""

    def __init__(
        self,
        *,
        snapshot: str,
        address: str,
        resources: Mapping[str, type[Resource]],
        data_sources: Mapping[str, type[DataSource]],
        backend: Callable[[Path], Any],
        schema_dir: Path | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.address = address
        self.resources = dict(resources)
        self.data_sources = dict(data_sources)
        self.backend_factory = backend
        self.schema_dir = schema_dir

    def load_schema(self) -> ProviderSchema:
        schema = load_snapshot(self.snapshot, self.address, self.schema_dir)
        missing = [t for t in self.resources if t not in schema.resources]
        missing += [t for t in self.data_sources if t not in schema.data_sources]
        if missing:
            raise SchemaError(
                f"schema snapshot {self.snapshot}.json lacks {', '.join(missing)}: refresh it"
            )
        return schema


def _diag(summary: str, detail: str = "", attribute: str | None = None) -> pb.Diagnostic:
    extra: dict[str, Any] = {}
    if attribute:
        extra["attribute"] = pb.AttributePath(
            steps=[pb.AttributePath.Step(attribute_name=attribute)]
        )
    return pb.Diagnostic(severity=pb.Diagnostic.ERROR, summary=summary, detail=detail, **extra)


def _failure(exc: BaseException, what: str) -> pb.Diagnostic:
    if isinstance(exc, ProviderError):
        return _diag(exc.summary, exc.detail, exc.attribute)
    # Unexpected: the type and message only (handlers never put secrets in messages).
    traceback.print_exc(file=sys.stderr)
    return _diag(f"local stand-in failed to {what}", f"{type(exc).__name__}: {exc}")


def _decode(value: pb.DynamicValue) -> Any:
    return read_dynamic_value(value)


def _encode(value: Any) -> pb.DynamicValue:
    if value is None:
        return pb.DynamicValue(msgpack=b"\xc0")  # msgpack nil: a null object
    return to_dynamic_value(value)


class Servicer(rpc.ProviderServicer):
    """The tfplugin6 Provider service for one stand-in."""

    def __init__(self, standin: StandIn) -> None:
        self.standin = standin
        self._schema: ProviderSchema | None = None
        self._schema_error: str | None = None
        self._handlers: dict[str, Resource] = {}
        self._sources: dict[str, DataSource] = {}
        self._configure_error: pb.Diagnostic | None = None

    # -- schema --------------------------------------------------------------------------------
    @property
    def schema(self) -> ProviderSchema:
        if self._schema is None:
            self._schema = self.standin.load_schema()
        return self._schema

    def _resource_schema(self, type_name: str) -> TypeSchema:
        try:
            return self.schema.resources[type_name]
        except KeyError:
            raise ProviderError(
                f"resource type {type_name} is not served by this stand-in"
            ) from None

    def GetMetadata(self, request: Any, context: Any) -> Any:
        return pb.GetMetadata.Response(
            server_capabilities=pb.ServerCapabilities(),
            resources=[
                pb.GetMetadata.ResourceMetadata(type_name=t) for t in self.standin.resources
            ],
            data_sources=[
                pb.GetMetadata.DataSourceMetadata(type_name=t) for t in self.standin.data_sources
            ],
        )

    def GetProviderSchema(self, request: Any, context: Any) -> Any:
        try:
            schema = self.schema
        except SchemaError as exc:
            return pb.GetProviderSchema.Response(
                diagnostics=[_diag("stand-in provider has no schema", str(exc))]
            )
        return pb.GetProviderSchema.Response(
            provider=to_pb(schema.provider),
            provider_meta=pb.Schema(version=0, block=pb.Schema.Block()),
            resource_schemas={
                t: to_pb(s) for t, s in schema.resources.items() if t in self.standin.resources
            },
            data_source_schemas={
                t: to_pb(s)
                for t, s in schema.data_sources.items()
                if t in self.standin.data_sources
            },
            server_capabilities=pb.ServerCapabilities(),
        )

    # -- provider config -------------------------------------------------------------------------
    def ValidateProviderConfig(self, request: Any, context: Any) -> Any:
        return pb.ValidateProviderConfig.Response()

    def ConfigureProvider(self, request: Any, context: Any) -> Any:
        home = os.environ.get(HOME_ENV)
        if not home:
            return pb.ConfigureProvider.Response(
                diagnostics=[
                    _diag(
                        f"{HOME_ENV} is not set",
                        f"The local stand-in for {self.standin.address} keeps its state under "
                        f"${HOME_ENV}/local. Run Terraform through forkstage (its environment "
                        f"from forkstage.engine.terraform_env), or export {HOME_ENV}.",
                    )
                ]
            )
        try:
            backend = self.standin.backend_factory(Path(home))
        except Exception as exc:
            return pb.ConfigureProvider.Response(diagnostics=[_failure(exc, "start")])
        self._handlers = {t: cls(backend) for t, cls in self.standin.resources.items()}
        self._sources = {t: cls(backend) for t, cls in self.standin.data_sources.items()}
        return pb.ConfigureProvider.Response()

    def _handler(self, type_name: str) -> Resource:
        try:
            return self._handlers[type_name]
        except KeyError:
            raise ProviderError(
                f"{type_name}: provider not configured",
                "Terraform called the stand-in before configuring it.",
            ) from None

    # -- validation ------------------------------------------------------------------------------
    def ValidateResourceConfig(self, request: Any, context: Any) -> Any:
        diags = []
        try:
            cls = self.standin.resources[request.type_name]
            cls.validate(_decode(request.config) or {})
        except Exception as exc:
            diags.append(_failure(exc, "validate"))
        return pb.ValidateResourceConfig.Response(diagnostics=diags)

    def ValidateDataResourceConfig(self, request: Any, context: Any) -> Any:
        diags = []
        try:
            cls = self.standin.data_sources[request.type_name]
            cls.validate(_decode(request.config) or {})
        except Exception as exc:
            diags.append(_failure(exc, "validate"))
        return pb.ValidateDataResourceConfig.Response(diagnostics=diags)

    # -- resources -------------------------------------------------------------------------------
    def UpgradeResourceState(self, request: Any, context: Any) -> Any:
        try:
            block = self._resource_schema(request.type_name).block
            if request.raw_state.flatmap:
                raise ProviderError("flatmap state (Terraform < 0.12) is not supported")
            state = normalize(block, json.loads(request.raw_state.json or b"null"))
            return pb.UpgradeResourceState.Response(upgraded_state=_encode(state))
        except Exception as exc:
            return pb.UpgradeResourceState.Response(diagnostics=[_failure(exc, "read state")])

    def ReadResource(self, request: Any, context: Any) -> Any:
        try:
            block = self._resource_schema(request.type_name).block
            current = normalize(block, _decode(request.current_state))
            if current is None:
                return pb.ReadResource.Response(new_state=_encode(None), private=request.private)
            fresh = self._handler(request.type_name).read(current)
            state = normalize(block, fresh)
            if state is not None and has_unknown(state):
                state = resolve(state, None)
            return pb.ReadResource.Response(new_state=_encode(state), private=request.private)
        except Exception as exc:
            return pb.ReadResource.Response(diagnostics=[_failure(exc, "read")])

    def PlanResourceChange(self, request: Any, context: Any) -> Any:
        try:
            schema = self._resource_schema(request.type_name)
            handler_cls = self.standin.resources[request.type_name]
            prior = normalize(schema.block, _decode(request.prior_state))
            proposed = normalize(schema.block, _decode(request.proposed_new_state))
            config = _decode(request.config) or {}
            replace: list[str] = []
            if proposed is None:  # destroy
                planned: dict[str, Value] | None = None
            elif prior is None:  # create
                planned = mark_computed_unknown(schema.block, proposed)
            else:  # update in place, or replace
                planned = proposed
                names = [*schema.block.attributes, *schema.block.blocks]
                changed = {n for n in names if prior.get(n) != planned.get(n)}
                replace = sorted(changed & handler_cls.replace_on)
                if changed and not replace:
                    for name in handler_cls.recompute_on_update:
                        attr = schema.block.attributes.get(name)
                        if attr is not None and attr.computed and config.get(name) is None:
                            planned[name] = Unknown
            return pb.PlanResourceChange.Response(
                planned_state=_encode(planned),
                requires_replace=[
                    pb.AttributePath(steps=[pb.AttributePath.Step(attribute_name=n)])
                    for n in replace
                ],
                planned_private=request.prior_private,
            )
        except Exception as exc:
            return pb.PlanResourceChange.Response(diagnostics=[_failure(exc, "plan")])

    def ApplyResourceChange(self, request: Any, context: Any) -> Any:
        try:
            block = self._resource_schema(request.type_name).block
            handler = self._handler(request.type_name)
            prior = normalize(block, _decode(request.prior_state))
            planned = normalize(block, _decode(request.planned_state))
            new_state: dict[str, Value] | None
            if planned is None:
                if prior is not None:
                    handler.delete(prior)
                new_state = None
            elif prior is None:
                new_state = resolve(planned, normalize(block, handler.create(planned)))
            else:
                new_state = resolve(planned, normalize(block, handler.update(prior, planned)))
            return pb.ApplyResourceChange.Response(
                new_state=_encode(new_state), private=request.planned_private
            )
        except Exception as exc:
            return pb.ApplyResourceChange.Response(diagnostics=[_failure(exc, "apply")])

    def ImportResourceState(self, request: Any, context: Any) -> Any:
        return pb.ImportResourceState.Response(
            diagnostics=[
                _diag(
                    f"{request.type_name}: import is not supported by the local stand-in",
                    "Create the resource with terraform apply instead.",
                )
            ]
        )

    def MoveResourceState(self, request: Any, context: Any) -> Any:
        return pb.MoveResourceState.Response(
            diagnostics=[_diag("moving resources between types is not supported locally")]
        )

    # -- data sources ----------------------------------------------------------------------------
    def ReadDataSource(self, request: Any, context: Any) -> Any:
        try:
            schema = self.schema.data_sources[request.type_name]
            source = self._sources.get(request.type_name)
            if source is None:
                raise ProviderError(f"{request.type_name}: provider not configured")
            config = normalize(schema.block, _decode(request.config)) or {}
            planned = mark_computed_unknown(schema.block, config)
            state = resolve(planned, normalize(schema.block, source.read(config)))
            return pb.ReadDataSource.Response(state=_encode(state))
        except Exception as exc:
            return pb.ReadDataSource.Response(diagnostics=[_failure(exc, "read data source")])

    # -- functions and shutdown ------------------------------------------------------------------
    def GetFunctions(self, request: Any, context: Any) -> Any:
        return pb.GetFunctions.Response()

    def StopProvider(self, request: Any, context: Any) -> Any:
        return pb.StopProvider.Response()


class _Controller(controller_rpc.GRPCControllerServicer):
    def __init__(self, on_stop: Callable[[], None]) -> None:
        self.on_stop = on_stop

    def Shutdown(self, request: Any, context: Any) -> Any:
        self.on_stop()
        return controller_pb.Empty()


class _Stdio(stdio_rpc.GRPCStdioServicer):
    def StreamStdio(self, request: Any, context: Any) -> Any:
        return iter(())


# -- TLS -------------------------------------------------------------------------------------------
def _tls_material(cache: Path | None) -> tuple[bytes, bytes, bytes]:
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
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(
                    {
                        "key": key_pem.decode(),
                        "cert": cert_pem.decode(),
                        "der": base64.b64encode(der).decode(),
                        "not_after": (now + timedelta(days=CERT_DAYS)).timestamp(),
                    },
                    handle,
                )
            tmp.replace(cache)
        except OSError:
            pass
    return key_pem, cert_pem, der


def tls_cache_path() -> Path | None:
    home = os.environ.get(HOME_ENV)
    return Path(home) / "local" / "providers" / "plugin-tls.json" if home else None


# -- runner ----------------------------------------------------------------------------------------
def serve(standin: StandIn) -> None:
    """Run as a Terraform provider plugin until Terraform shuts us down."""
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        print(
            f"This is forkstage's local stand-in for the Terraform provider {standin.address}.\n"
            "Terraform starts it; it is not meant to be run by hand.",
            file=sys.stderr,
        )
        raise SystemExit(1)
    # Terraform forwards Ctrl-C to the whole process group and then stops us through the
    # protocol; dying on SIGINT mid-apply would leave half-made resources.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())

    key_pem, cert_pem, der = _tls_material(tls_cache_path())
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=10))
    rpc.add_ProviderServicer_to_server(Servicer(standin), server)
    controller_rpc.add_GRPCControllerServicer_to_server(_Controller(stopped.set), server)
    stdio_rpc.add_GRPCStdioServicer_to_server(_Stdio(), server)
    with tempfile.TemporaryDirectory(prefix="forkstage-tfplugin-") as tmp:
        address = f"{tmp}/plugin.sock"
        server.add_secure_port(
            f"unix:{address}",
            grpc.ssl_server_credentials([(key_pem, cert_pem)], require_client_auth=False),
        )
        server.start()
        cert_b64 = base64.b64encode(der).decode().rstrip("=")
        sys.stdout.write(f"1|6|unix|{address}|grpc|{cert_b64}\n")
        sys.stdout.flush()
        parent = os.getppid()
        # Also stop if Terraform died without telling us (we get re-parented).
        while not stopped.wait(0.5):
            if os.getppid() != parent:
                break
        server.stop(grace=1).wait()
