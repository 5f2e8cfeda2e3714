"""The tfplugin6 Provider service, generic over a stand-in and driven by its real schema.

- a create plan marks every computed attribute the config leaves null as unknown;
- an update plan keeps Terraform's proposed state and asks for replacement when an attribute
  listed in the handler's ``replace_on`` changes (the snapshot carries no plan modifiers);
- apply keeps every planned known value and fills unknowns from what the handler reports, so
  Terraform never sees an "inconsistent result";
- a handler's ``read`` returning None says "gone", and Terraform plans a create, as the real
  providers do after a 404.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from tf.gen import tfplugin_pb2 as pb
from tf.gen import tfplugin_pb2_grpc as rpc
from tf.types import Unknown

from cdk.providers.schema import ProviderSchema, Schema, SchemaError
from localcloud.providers.standin import (
    HOME_ENV,
    DataSource,
    ProviderError,
    Resource,
    StandIn,
    step_delay,
)
from localcloud.providers.values import (
    Value,
    has_unknown,
    mark_computed_unknown,
    normalize,
    resolve,
)
from localcloud.providers.wire import attribute_path, decode, diag, encode, failure, to_pb


class Servicer(rpc.ProviderServicer):
    """The tfplugin6 Provider service for one stand-in."""

    def __init__(self, standin: StandIn) -> None:
        self.standin = standin
        self._schema: ProviderSchema | None = None
        self._handlers: dict[str, Resource] = {}
        self._sources: dict[str, DataSource] = {}
        # set by StopProvider (Terraform's graceful stop after Ctrl-C): a step still waiting
        # ends at once, with what it made returned, so it lands in the state
        self.stopping = threading.Event()

    # -- schema --------------------------------------------------------------------------------
    @property
    def schema(self) -> ProviderSchema:
        if self._schema is None:
            self._schema = self.standin.load_schema()
        return self._schema

    def _resource_schema(self, type_name: str) -> Schema:
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
                diagnostics=[diag("stand-in provider has no schema", str(exc))]
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
                    diag(
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
            return pb.ConfigureProvider.Response(diagnostics=[failure(exc, "start")])
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
            cls.validate(decode(request.config) or {})
        except Exception as exc:
            diags.append(failure(exc, "validate"))
        return pb.ValidateResourceConfig.Response(diagnostics=diags)

    def ValidateDataResourceConfig(self, request: Any, context: Any) -> Any:
        diags = []
        try:
            cls = self.standin.data_sources[request.type_name]
            cls.validate(decode(request.config) or {})
        except Exception as exc:
            diags.append(failure(exc, "validate"))
        return pb.ValidateDataResourceConfig.Response(diagnostics=diags)

    # -- resources -------------------------------------------------------------------------------
    def UpgradeResourceState(self, request: Any, context: Any) -> Any:
        try:
            block = self._resource_schema(request.type_name).block
            if request.raw_state.flatmap:
                raise ProviderError("flatmap state (Terraform < 0.12) is not supported")
            state = normalize(block, json.loads(request.raw_state.json or b"null"))
            return pb.UpgradeResourceState.Response(upgraded_state=encode(state))
        except Exception as exc:
            return pb.UpgradeResourceState.Response(diagnostics=[failure(exc, "read state")])

    def ReadResource(self, request: Any, context: Any) -> Any:
        try:
            block = self._resource_schema(request.type_name).block
            current = normalize(block, decode(request.current_state))
            if current is None:
                return pb.ReadResource.Response(new_state=encode(None), private=request.private)
            fresh = self._handler(request.type_name).read(current)
            state = normalize(block, fresh)
            if state is not None and has_unknown(state):
                state = resolve(state, None)
            return pb.ReadResource.Response(new_state=encode(state), private=request.private)
        except Exception as exc:
            return pb.ReadResource.Response(diagnostics=[failure(exc, "read")])

    def PlanResourceChange(self, request: Any, context: Any) -> Any:
        try:
            schema = self._resource_schema(request.type_name)
            handler_cls = self.standin.resources[request.type_name]
            prior = normalize(schema.block, decode(request.prior_state))
            proposed = normalize(schema.block, decode(request.proposed_new_state))
            config = decode(request.config) or {}
            replace: list[str] = []
            if proposed is None:  # destroy
                planned: dict[str, Value] | None = None
            elif prior is None:  # create
                planned = mark_computed_unknown(schema.block, proposed)
            else:  # update in place, or replace
                planned = proposed
                names = schema.block.names
                changed = {n for n in names if prior.get(n) != planned.get(n)}
                replace = sorted(changed & handler_cls.replace_on)
                if changed and not replace:
                    for name in handler_cls.recompute_on_update:
                        attr = schema.block.attribute(name)
                        if attr is not None and attr.computed and config.get(name) is None:
                            planned[name] = Unknown
            return pb.PlanResourceChange.Response(
                planned_state=encode(planned),
                requires_replace=[attribute_path(n) for n in replace],
                planned_private=request.prior_private,
            )
        except Exception as exc:
            return pb.PlanResourceChange.Response(diagnostics=[failure(exc, "plan")])

    def ApplyResourceChange(self, request: Any, context: Any) -> Any:
        try:
            block = self._resource_schema(request.type_name).block
            handler = self._handler(request.type_name)
            prior = normalize(block, decode(request.prior_state))
            planned = normalize(block, decode(request.planned_state))
            new_state: dict[str, Value] | None
            if planned is None:
                if prior is not None:
                    handler.delete(prior)
                new_state, operation = None, "delete"
            elif prior is None:
                new_state = resolve(planned, normalize(block, handler.create(planned)))
                operation = "create"
            else:
                new_state = resolve(planned, normalize(block, handler.update(prior, planned)))
                operation = "update"
            self.stopping.wait(step_delay(request.type_name, operation))
            return pb.ApplyResourceChange.Response(
                new_state=encode(new_state), private=request.planned_private
            )
        except Exception as exc:
            return pb.ApplyResourceChange.Response(diagnostics=[failure(exc, "apply")])

    def ImportResourceState(self, request: Any, context: Any) -> Any:
        return pb.ImportResourceState.Response(
            diagnostics=[
                diag(
                    f"{request.type_name}: import is not supported by the local stand-in",
                    "Create the resource with terraform apply instead.",
                )
            ]
        )

    def MoveResourceState(self, request: Any, context: Any) -> Any:
        return pb.MoveResourceState.Response(
            diagnostics=[diag("moving resources between types is not supported locally")]
        )

    # -- data sources ----------------------------------------------------------------------------
    def ReadDataSource(self, request: Any, context: Any) -> Any:
        try:
            schema = self.schema.data_sources[request.type_name]
            source = self._sources.get(request.type_name)
            if source is None:
                raise ProviderError(f"{request.type_name}: provider not configured")
            config = normalize(schema.block, decode(request.config)) or {}
            planned = mark_computed_unknown(schema.block, config)
            state = resolve(planned, normalize(schema.block, source.read(config)))
            return pb.ReadDataSource.Response(state=encode(state))
        except Exception as exc:
            return pb.ReadDataSource.Response(diagnostics=[failure(exc, "read data source")])

    # -- functions and shutdown ------------------------------------------------------------------
    def GetFunctions(self, request: Any, context: Any) -> Any:
        return pb.GetFunctions.Response()

    def StopProvider(self, request: Any, context: Any) -> Any:
        self.stopping.set()
        return pb.StopProvider.Response()
