"""Values walked by a provider schema: what the stand-ins add to ``cdk.providers.schema``.

The stand-ins serve the real providers' schemas (the snapshots under ``cdk/providers/schemas/``,
read by the one parser in ``cdk.providers.schema``), so the bindings, the synthesized config and
the stand-ins cannot disagree. What is left here is the generic plan/apply logic on decoded cty
values: normalising an object to its schema, marking computed attributes unknown in a create plan,
and filling unknowns from what a stand-in reports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

from tf.types import Unknown

from cdk.providers.schema import Attribute, Block, BlockType

Value = Any  # a decoded cty value: None, Unknown, str, int, float, bool, list, dict


def known(value: Value) -> Value:
    """``value`` with every part that is still unknown (at plan time) as None."""
    return resolve(Unknown, value)


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
        bt.name: _normalize_block(bt, obj.get(bt.name)) for bt in block.block_types
    }


def _normalize_attrs(attrs: Iterable[Attribute], obj: Mapping[str, Value]) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for attr in attrs:
        value = obj.get(attr.name)
        if attr.nested is not None and value is not None and value is not Unknown:
            nested = attr.nested
            value = _rebuild(
                nested.nesting_mode, value, partial(_normalize_object, nested.attributes)
            )
        out[attr.name] = value
    return out


def _normalize_object(attrs: Iterable[Attribute], value: Value) -> Value:
    return value if value is Unknown else _normalize_attrs(attrs, value)


def _normalize_block(bt: BlockType, value: Value) -> Value:
    mode = bt.nesting_mode
    if value is None:
        return None if mode == "single" else ({} if mode == "map" else [])
    if value is Unknown:
        return value
    return _rebuild(mode, value, partial(normalize, bt.block))


def mark_computed_unknown(block: Block, obj: Mapping[str, Value]) -> dict[str, Value]:
    """A create plan: every computed attribute the config leaves null becomes unknown."""
    return _mark_attrs(block.attributes, obj) | {
        bt.name: _rebuild(bt.nesting_mode, obj.get(bt.name), partial(_mark_block_object, bt.block))
        for bt in block.block_types
    }


def _mark_block_object(block: Block, value: Value) -> Value:
    return value if value is Unknown else mark_computed_unknown(block, value)


def _mark_attrs(attrs: Iterable[Attribute], obj: Mapping[str, Value]) -> dict[str, Value]:
    out = dict(obj)
    for attr in attrs:
        value = obj.get(attr.name)
        if value is None and attr.computed:
            out[attr.name] = Unknown
        elif attr.nested is not None and value is not None and value is not Unknown:
            nested = attr.nested
            out[attr.name] = _rebuild(
                nested.nesting_mode, value, partial(_mark_object, nested.attributes)
            )
    return out


def _mark_object(attrs: Iterable[Attribute], value: Value) -> Value:
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
