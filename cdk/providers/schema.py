"""Read a ``terraform providers schema -json`` snapshot into a small typed model.

Codegen, the snapshot checks and the offline stand-in providers (``localcloud.providers``) all
read the snapshots; one parser keeps them agreeing on what an attribute's type and flags mean.
The model keeps every field Terraform's JSON has for the pinned providers (description kinds
and deprecation included), so a stand-in can serve the schema back exactly as Terraform showed it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdk.providers.pins import ProviderPin

SCHEMAS_DIR = Path(__file__).parent / "schemas"


class SchemaError(ValueError):
    """A snapshot that does not have the shape Terraform writes."""


@dataclass(frozen=True)
class Attribute:
    name: str
    type: Any  # cty type in Terraform's JSON form; None when nested_type is set
    nested: NestedType | None
    required: bool
    optional: bool
    computed: bool
    sensitive: bool
    write_only: bool
    deprecated: bool
    description: str
    description_kind: str = "plain"  # plain | markdown

    @property
    def is_input(self) -> bool:
        return self.required or self.optional


@dataclass(frozen=True)
class NestedType:
    nesting_mode: str  # single | list | set | map
    attributes: tuple[Attribute, ...]


@dataclass(frozen=True)
class BlockType:
    name: str
    nesting_mode: str  # single | group | list | set | map
    block: Block
    min_items: int
    max_items: int


@dataclass(frozen=True)
class Block:
    attributes: tuple[Attribute, ...]
    block_types: tuple[BlockType, ...]
    description: str
    description_kind: str = "plain"  # plain | markdown
    deprecated: bool = False

    def attribute(self, name: str) -> Attribute | None:
        return next((a for a in self.attributes if a.name == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        """Every attribute and nested block name: the keys of an object of this block."""
        return tuple(a.name for a in self.attributes) + tuple(b.name for b in self.block_types)


@dataclass(frozen=True)
class Schema:
    version: int
    block: Block


@dataclass(frozen=True)
class ProviderSchema:
    pin: ProviderPin
    provider: Schema
    resources: dict[str, Schema]
    data_sources: dict[str, Schema]


def snapshot_path(pin: ProviderPin, folder: Path | None = None) -> Path:
    """``<folder>/<name>.json``; the committed snapshots by default."""
    return (folder or SCHEMAS_DIR) / f"{pin.name}.json"


def dump_snapshot(doc: dict[str, Any]) -> str:
    """The committed text form: pretty-printed, sorted keys, trailing newline."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def load(pin: ProviderPin, path: Path | None = None) -> ProviderSchema:
    path = path or snapshot_path(pin)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise SchemaError(
            f"schema snapshot {path} is missing: `forkstage providers refresh {pin.name}` writes it"
        ) from None
    except json.JSONDecodeError as exc:
        raise SchemaError(f"schema snapshot {path} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SchemaError(f"schema snapshot {path} is not `providers schema -json` output")
    return parse(doc, pin)


def parse(doc: dict[str, Any], pin: ProviderPin) -> ProviderSchema:
    if doc.get("format_version") != "1.0":
        raise SchemaError(f"format_version must be '1.0', got {doc.get('format_version')!r}")
    try:
        raw = doc["provider_schemas"][pin.fqn]
    except KeyError as exc:
        raise SchemaError(f"snapshot has no provider_schemas[{pin.fqn!r}]") from exc
    return ProviderSchema(
        pin=pin,
        provider=_schema(raw["provider"], "provider"),
        resources={k: _schema(v, k) for k, v in sorted(raw.get("resource_schemas", {}).items())},
        data_sources={
            k: _schema(v, k) for k, v in sorted(raw.get("data_source_schemas", {}).items())
        },
    )


def _schema(raw: dict[str, Any], where: str) -> Schema:
    return Schema(version=int(raw.get("version", 0)), block=_block(raw["block"], where))


def _block(raw: dict[str, Any], where: str) -> Block:
    attrs = tuple(
        _attribute(n, a, f"{where}.{n}") for n, a in sorted(raw.get("attributes", {}).items())
    )
    blocks = tuple(
        BlockType(
            name=n,
            nesting_mode=_mode(
                b["nesting_mode"], f"{where}.{n}", ("single", "group", "list", "set", "map")
            ),
            block=_block(b["block"], f"{where}.{n}"),
            min_items=int(b.get("min_items", 0)),
            max_items=int(b.get("max_items", 0)),
        )
        for n, b in sorted(raw.get("block_types", {}).items())
    )
    return Block(
        attributes=attrs,
        block_types=blocks,
        description=raw.get("description", ""),
        description_kind=raw.get("description_kind", "plain"),
        deprecated=bool(raw.get("deprecated")),
    )


def _mode(mode: str, where: str, allowed: tuple[str, ...]) -> str:
    if mode not in allowed:
        raise SchemaError(f"{where}: nesting_mode {mode!r} is not one of {allowed}")
    return mode


def _attribute(name: str, raw: dict[str, Any], where: str) -> Attribute:
    nested = None
    if "nested_type" in raw:
        nt = raw["nested_type"]
        nested = NestedType(
            nesting_mode=_mode(nt["nesting_mode"], where, ("single", "list", "set", "map")),
            attributes=tuple(
                _attribute(n, a, f"{where}.{n}") for n, a in sorted(nt["attributes"].items())
            ),
        )
        if "type" in raw:
            raise SchemaError(f"{where}: has both type and nested_type")
    elif "type" not in raw:
        raise SchemaError(f"{where}: has neither type nor nested_type")
    else:
        check_type(raw["type"], where)
    attr = Attribute(
        name=name,
        type=raw.get("type"),
        nested=nested,
        required=bool(raw.get("required")),
        optional=bool(raw.get("optional")),
        computed=bool(raw.get("computed")),
        sensitive=bool(raw.get("sensitive")),
        write_only=bool(raw.get("write_only")),
        deprecated=bool(raw.get("deprecated")),
        description=raw.get("description", ""),
        description_kind=raw.get("description_kind", "plain"),
    )
    flags = (attr.required, attr.optional, attr.computed)
    valid = flags in ((True, False, False), (False, True, False), (False, False, True))
    if not (valid or flags == (False, True, True)):
        raise SchemaError(
            f"{where}: needs exactly one of required/optional/computed (or optional+computed)"
        )
    return attr


def check_type(t: Any, where: str) -> None:
    """Reject anything that is not a cty type in Terraform's JSON encoding."""
    if t in ("string", "number", "bool", "dynamic"):
        return
    if isinstance(t, list) and len(t) == 2:
        kind, inner = t
        if kind in ("list", "set", "map"):
            check_type(inner, where)
            return
        if kind == "object" and isinstance(inner, dict):
            for k, v in inner.items():
                check_type(v, f"{where}.{k}")
            return
    if isinstance(t, list) and len(t) == 2 and t[0] == "tuple" and isinstance(t[1], list):
        for i, v in enumerate(t[1]):
            check_type(v, f"{where}[{i}]")
        return
    raise SchemaError(f"{where}: {t!r} is not a Terraform type")
