"""The tfplugin6 wire forms: schemas as protobuf, values as msgpack, failures as diagnostics.

The PyPI package ``tf`` provides the generated tfplugin6 stubs and the msgpack wire format; its
own resource framework cannot express nested attributes, so only those parts of it are used.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any

from tf.gen import tfplugin_pb2 as pb
from tf.utils import read_dynamic_value, to_dynamic_value

from cdk.providers.schema import Attribute, Block, Schema
from localcloud.providers.standin import ProviderError

# -- schemas -----------------------------------------------------------------------------------
_KINDS = {"plain": pb.PLAIN, "markdown": pb.MARKDOWN}
_BLOCK_MODES = {
    "single": pb.Schema.NestedBlock.SINGLE,
    "list": pb.Schema.NestedBlock.LIST,
    "set": pb.Schema.NestedBlock.SET,
    "map": pb.Schema.NestedBlock.MAP,
    "group": pb.Schema.NestedBlock.GROUP,
}
_OBJECT_MODES = {
    "single": pb.Schema.Object.SINGLE,
    "list": pb.Schema.Object.LIST,
    "set": pb.Schema.Object.SET,
    "map": pb.Schema.Object.MAP,
}


def to_pb(schema: Schema) -> pb.Schema:
    return pb.Schema(version=schema.version, block=_block_pb(schema.block))


def _block_pb(block: Block) -> pb.Schema.Block:
    return pb.Schema.Block(
        attributes=[_attr_pb(a) for a in block.attributes],
        block_types=[
            pb.Schema.NestedBlock(
                type_name=bt.name,
                block=_block_pb(bt.block),
                nesting=_BLOCK_MODES[bt.nesting_mode],
                min_items=bt.min_items,
                max_items=bt.max_items,
            )
            for bt in block.block_types
        ],
        description=block.description,
        description_kind=_KINDS[block.description_kind],
        deprecated=block.deprecated,
    )


def _attr_pb(attr: Attribute) -> pb.Schema.Attribute:
    extra: dict[str, Any] = {}
    if attr.nested is not None:
        extra["nested_type"] = pb.Schema.Object(
            attributes=[_attr_pb(a) for a in attr.nested.attributes],
            nesting=_OBJECT_MODES[attr.nested.nesting_mode],
        )
    else:
        extra["type"] = json.dumps(attr.type, separators=(",", ":")).encode()
    return pb.Schema.Attribute(
        name=attr.name,
        description=attr.description,
        description_kind=_KINDS[attr.description_kind],
        required=attr.required,
        optional=attr.optional,
        computed=attr.computed,
        sensitive=attr.sensitive,
        deprecated=attr.deprecated,
        **extra,
    )


# -- values ------------------------------------------------------------------------------------
def decode(value: pb.DynamicValue) -> Any:
    return read_dynamic_value(value)


def encode(value: Any) -> pb.DynamicValue:
    if value is None:
        return pb.DynamicValue(msgpack=b"\xc0")  # msgpack nil: a null object
    return to_dynamic_value(value)


def attribute_path(name: str) -> pb.AttributePath:
    return pb.AttributePath(steps=[pb.AttributePath.Step(attribute_name=name)])


# -- diagnostics -------------------------------------------------------------------------------
def diag(summary: str, detail: str = "", attribute: str | None = None) -> pb.Diagnostic:
    extra: dict[str, Any] = {}
    if attribute:
        extra["attribute"] = attribute_path(attribute)
    return pb.Diagnostic(severity=pb.Diagnostic.ERROR, summary=summary, detail=detail, **extra)


def failure(exc: BaseException, what: str) -> pb.Diagnostic:
    if isinstance(exc, ProviderError):
        return diag(exc.summary, exc.detail, exc.attribute)
    # Unexpected: the type and message only (handlers never put secrets in messages).
    traceback.print_exc(file=sys.stderr)
    return diag(f"local stand-in failed to {what}", f"{type(exc).__name__}: {exc}")
