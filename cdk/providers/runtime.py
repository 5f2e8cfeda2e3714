"""What the generated bindings share at runtime: checking nested inputs and shaping them for synth.

Generated classes hold a ``Spec`` per resource and per nested object; this module turns the
keyword arguments into Terraform-JSON-ready values once, at construction, so a misspelled key in
a nested dict fails where it was written instead of at ``terraform plan``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

# A field is either a cty type in Terraform's JSON form ("string", ("list", "string"), ...) or a
# nested object (nested attribute or block).
FieldType: TypeAlias = "str | tuple[Any, ...] | Nested"


@dataclass(frozen=True)
class Nested:
    """A nested attribute (``block=False``) or block (``block=True``) of ``spec`` objects."""

    mode: str  # single | list | set | map
    spec: Spec
    block: bool = False
    max_one: bool = False  # a list/set block limited to one item: accept one object


@dataclass(frozen=True)
class Spec:
    """Keys, types and required keys of one object type, named as in the generated code."""

    name: str
    fields: Mapping[str, FieldType]
    required: frozenset[str] = field(default_factory=frozenset)


def render_inputs(values: Mapping[str, Any], spec: Spec) -> dict[str, Any]:
    """Drop unset inputs and check/shape nested ones; keys are Terraform attribute names."""
    return {k: _render(v, spec.fields[k], k) for k, v in values.items() if v is not None}


def _render(value: Any, ftype: FieldType, where: str) -> Any:
    if isinstance(ftype, Nested):
        return _render_nested(value, ftype, where)
    return _plain(value)


def _plain(value: Any) -> Any:
    # jsii serialises lists and dicts, not tuples or other Sequences/Mappings.
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _render_nested(value: Any, nested: Nested, where: str) -> Any:
    if nested.mode == "single":
        return _render_object(value, nested.spec, where)
    if nested.mode == "map":
        if not isinstance(value, Mapping):
            return value  # a token
        return {k: _render_object(v, nested.spec, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, Mapping):
        if not nested.max_one:
            raise TypeError(f"{where}: expected a list of {nested.spec.name}, got one object")
        value = [value]
    if not isinstance(value, (list, tuple)):
        return value  # a token
    return [_render_object(v, nested.spec, f"{where}[{i}]") for i, v in enumerate(value)]


def _render_object(value: Any, spec: Spec, where: str) -> Any:
    if not isinstance(value, Mapping):
        return value  # a token (cdktf.IResolvable) standing for the whole object
    unknown = sorted(set(value) - set(spec.fields))
    if unknown:
        raise TypeError(
            f"{where}: {spec.name} got unexpected key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(spec.fields))}"
        )
    missing = sorted(k for k in spec.required if value.get(k) is None)
    if missing:
        raise TypeError(f"{where}: {spec.name} is missing required key(s) {', '.join(missing)}")
    return {
        k: _render(v, spec.fields[k], f"{where}.{k}") for k, v in value.items() if v is not None
    }


_STORAGE = {"string": "string", "number": "number", "bool": "boolean"}


def hcl_attributes(inputs: Mapping[str, Any], spec: Spec) -> dict[str, Any]:
    """The typed form cdktf's HCL renderer wants (only used when synthesizing HCL)."""
    out: dict[str, Any] = {}
    for name, value in inputs.items():
        ftype = spec.fields[name]
        if isinstance(ftype, Nested):
            if ftype.block:
                kind = "struct" if ftype.mode == "single" else ftype.mode
                out[name] = {"value": value, "isBlock": True, "type": kind, "storageClassType": ""}
            else:
                out[name] = {"value": value, "isBlock": False, "type": "any"}
        elif isinstance(ftype, str) and ftype in _STORAGE:
            out[name] = {
                "value": value,
                "isBlock": False,
                "type": "simple",
                "storageClassType": _STORAGE[ftype],
            }
        elif (
            isinstance(ftype, tuple) and ftype[0] in ("list", "set", "map") and ftype[1] in _STORAGE
        ):
            suffix = "Map" if ftype[0] == "map" else "List"
            out[name] = {
                "value": value,
                "isBlock": False,
                "type": ftype[0],
                "storageClassType": _STORAGE[ftype[1]] + suffix,
            }
        else:
            out[name] = {"value": value, "isBlock": False, "type": "any"}
    return out
