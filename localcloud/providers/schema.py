"""Provider schemas read from the snapshots that also generate the typed bindings.

The stand-ins never declare a schema of their own: they serve the exact JSON that
``terraform providers schema -json`` printed for the real provider (kept under
``cdk/providers/schemas/``), so the bindings, the synthesized config and the stand-ins cannot
disagree. This module turns that JSON into tfplugin6 protobuf, and walks values by schema for
the generic plan/apply logic (unknown marking, filling in computed values, normalising).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tf.gen import tfplugin_pb2 as pb
from tf.types import Unknown

Value = Any  # a decoded cty value: None, Unknown, str, int, float, bool, list, dict


class SchemaError(RuntimeError):
    """A schema snapshot is missing or not in ``terraform providers schema -json`` form."""


@dataclass(frozen=True)
class Attr:
    """One attribute; ``nested`` is set for nested-attribute objects (protocol 6)."""

    name: str
    type: Any = None
    nested: Nested | None = None
    required: bool = False
    optional: bool = False
    computed: bool = False
    sensitive: bool = False
    deprecated: bool = False
    description: str = ""
    description_kind: str = "plain"


@dataclass(frozen=True)
class Nested:
    mode: str  # single | list | set | map
    attributes: dict[str, Attr]


@dataclass(frozen=True)
class Block:
    attributes: dict[str, Attr] = field(default_factory=dict)
    blocks: dict[str, BlockType] = field(default_factory=dict)
    description: str = ""
    description_kind: str = "plain"
    deprecated: bool = False


@dataclass(frozen=True)
class BlockType:
    name: str
    mode: str  # single | list | set | map | group
    block: Block
    min_items: int = 0
    max_items: int = 0


@dataclass(frozen=True)
class TypeSchema:
    """The schema of a provider config, a resource type or a data source type."""

    version: int
    block: Block


@dataclass(frozen=True)
class ProviderSchema:
    address: str
    provider: TypeSchema
    resources: dict[str, TypeSchema]
    data_sources: dict[str, TypeSchema]


# -- loading -----------------------------------------------------------------------------------
def snapshot_dir() -> Path:
    """``cdk/providers/schemas``: found without importing the bindings (provider start is hot)."""
    spec = importlib.util.find_spec("cdk.providers")
    if spec is None or not spec.submodule_search_locations:
        raise SchemaError("package cdk.providers is not installed: run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / "schemas"


def load_snapshot(
    name: str, address: str | None = None, folder: Path | None = None
) -> ProviderSchema:
    """The provider schema in ``<folder>/<name>.json`` (one provider, or the one at ``address``)."""
    path = (folder or snapshot_dir()) / f"{name}.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise SchemaError(
            f"schema snapshot {path} is missing: it is written by `python -m cdk.providers.refresh`"
        ) from None
    except json.JSONDecodeError as exc:
        raise SchemaError(f"schema snapshot {path} is not JSON: {exc}") from None
    schemas = doc.get("provider_schemas") if isinstance(doc, dict) else None
    if not isinstance(schemas, dict) or not schemas:
        raise SchemaError(
            f"{path} has no provider_schemas: expected `providers schema -json` output"
        )
    if address is None:
        if len(schemas) != 1:
            raise SchemaError(f"{path} holds {len(schemas)} providers: name the one to serve")
        address = next(iter(schemas))
    if address not in schemas:
        raise SchemaError(f"{path} has no schema for {address} (it has {', '.join(schemas)})")
    raw = schemas[address]
    return ProviderSchema(
        address=address,
        provider=_type_schema(raw.get("provider", {"version": 0, "block": {}})),
        resources={k: _type_schema(v) for k, v in (raw.get("resource_schemas") or {}).items()},
        data_sources={
            k: _type_schema(v) for k, v in (raw.get("data_source_schemas") or {}).items()
        },
    )


def _type_schema(raw: Mapping[str, Any]) -> TypeSchema:
    return TypeSchema(version=int(raw.get("version", 0)), block=_block(raw.get("block") or {}))


def _block(raw: Mapping[str, Any]) -> Block:
    return Block(
        attributes={k: _attr(k, v) for k, v in (raw.get("attributes") or {}).items()},
        blocks={
            k: BlockType(
                name=k,
                mode=v["nesting_mode"],
                block=_block(v.get("block") or {}),
                min_items=int(v.get("min_items", 0)),
                max_items=int(v.get("max_items", 0)),
            )
            for k, v in (raw.get("block_types") or {}).items()
        },
        description=raw.get("description", ""),
        description_kind=raw.get("description_kind", "plain"),
        deprecated=bool(raw.get("deprecated")),
    )


def _attr(name: str, raw: Mapping[str, Any]) -> Attr:
    nested = None
    if "nested_type" in raw:
        nt = raw["nested_type"]
        nested = Nested(
            mode=nt["nesting_mode"],
            attributes={k: _attr(k, v) for k, v in (nt.get("attributes") or {}).items()},
        )
    return Attr(
        name=name,
        type=raw.get("type"),
        nested=nested,
        required=bool(raw.get("required")),
        optional=bool(raw.get("optional")),
        computed=bool(raw.get("computed")),
        sensitive=bool(raw.get("sensitive")),
        deprecated=bool(raw.get("deprecated")),
        description=raw.get("description", ""),
        description_kind=raw.get("description_kind", "plain"),
    )


# -- protobuf ----------------------------------------------------------------------------------
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


def to_pb(schema: TypeSchema) -> pb.Schema:
    return pb.Schema(version=schema.version, block=_block_pb(schema.block))


def _block_pb(block: Block) -> pb.Schema.Block:
    return pb.Schema.Block(
        attributes=[_attr_pb(a) for a in block.attributes.values()],
        block_types=[
            pb.Schema.NestedBlock(
                type_name=bt.name,
                block=_block_pb(bt.block),
                nesting=_BLOCK_MODES[bt.mode],
                min_items=bt.min_items,
                max_items=bt.max_items,
            )
            for bt in block.blocks.values()
        ],
        description=block.description,
        description_kind=_KINDS[block.description_kind],
        deprecated=block.deprecated,
    )


def _attr_pb(attr: Attr) -> pb.Schema.Attribute:
    extra: dict[str, Any] = {}
    if attr.nested is not None:
        extra["nested_type"] = pb.Schema.Object(
            attributes=[_attr_pb(a) for a in attr.nested.attributes.values()],
            nesting=_OBJECT_MODES[attr.nested.mode],
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
def _elements(mode: str, value: Value) -> list[Value]:
    """The objects inside a nested attribute or block value, whatever its nesting mode."""
    if value is None or value is Unknown:
        return []
    if mode in ("single", "group"):
        return [value]
    if mode == "map":
        return list(value.values())
    return list(value)


def _rebuild(mode: str, value: Value, fn: Callable[[Value], Value]) -> Value:
    if value is None or value is Unknown:
        return value
    if mode in ("single", "group"):
        return fn(value)
    if mode == "map":
        return {k: fn(v) for k, v in value.items()}
    return [fn(v) for v in value]


def normalize(block: Block, obj: Mapping[str, Value] | None) -> dict[str, Value] | None:
    """``obj`` with exactly the schema's attributes and blocks (missing ones null/empty)."""
    if obj is None:
        return None
    return _normalize_attrs(block.attributes, obj) | {
        name: _normalize_block(bt, obj.get(name)) for name, bt in block.blocks.items()
    }


def _normalize_attrs(attrs: Mapping[str, Attr], obj: Mapping[str, Value]) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for name, attr in attrs.items():
        value = obj.get(name)
        if attr.nested is not None and value is not None and value is not Unknown:
            nested = attr.nested
            value = _rebuild(nested.mode, value, partial(_normalize_object, nested.attributes))
        out[name] = value
    return out


def _normalize_object(attrs: Mapping[str, Attr], value: Value) -> Value:
    return value if value is Unknown else _normalize_attrs(attrs, value)


def _normalize_block(bt: BlockType, value: Value) -> Value:
    if value is None:
        return None if bt.mode == "single" else ({} if bt.mode == "map" else [])
    if value is Unknown:
        return value
    return _rebuild(bt.mode, value, partial(normalize, bt.block))


def mark_computed_unknown(block: Block, obj: Mapping[str, Value]) -> dict[str, Value]:
    """A create plan: every computed attribute the config leaves null becomes unknown."""
    return _mark_attrs(block.attributes, obj) | {
        name: _rebuild(bt.mode, obj.get(name), partial(_mark_block_object, bt.block))
        for name, bt in block.blocks.items()
    }


def _mark_block_object(block: Block, value: Value) -> Value:
    return value if value is Unknown else mark_computed_unknown(block, value)


def _mark_attrs(attrs: Mapping[str, Attr], obj: Mapping[str, Value]) -> dict[str, Value]:
    out = dict(obj)
    for name, attr in attrs.items():
        value = obj.get(name)
        if value is None and attr.computed:
            out[name] = Unknown
        elif attr.nested is not None and value is not None and value is not Unknown:
            nested = attr.nested
            out[name] = _rebuild(nested.mode, value, partial(_mark_object, nested.attributes))
    return out


def _mark_object(attrs: Mapping[str, Attr], value: Value) -> Value:
    return value if value is Unknown else _mark_attrs(attrs, value)


def has_unknown(value: Value) -> bool:
    if value is Unknown:
        return True
    if isinstance(value, dict):
        return any(has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(has_unknown(v) for v in value)
    return False


def resolve(planned: Value, actual: Value) -> Value:
    """The new state after apply: every known planned value kept as planned (Terraform checks
    that), every unknown taken from what the stand-in reports, null when it reports nothing."""
    if planned is Unknown:
        return _known_or_null(actual)
    if isinstance(planned, dict) and has_unknown(planned):
        fields = actual if isinstance(actual, dict) else {}
        return {k: resolve(v, fields.get(k)) for k, v in planned.items()}
    if isinstance(planned, list) and has_unknown(planned):
        items = actual if isinstance(actual, list) and len(actual) == len(planned) else []
        return [resolve(v, items[i] if items else None) for i, v in enumerate(planned)]
    return planned


def _known_or_null(value: Value) -> Value:
    if value is Unknown:
        return None
    if isinstance(value, dict):
        return {k: _known_or_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_known_or_null(v) for v in value]
    return value
