"""What a generated bindings module holds: Python names and types for a provider's schema.

``build`` turns a parsed snapshot into a ``Module`` (typed dicts and classes with their fields);
codegen.py renders it through the templates. Kept apart so the mapping from Terraform's types
and names to Python's can be read (and tested) without the rendering around it.
"""

from __future__ import annotations

import keyword
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cdk.providers import schema as sch
from cdk.providers.pins import ProviderPin

# Members of TerraformResource / TerraformDataSource / TerraformProvider (Python names; the same
# in cdktf 0.21 and cdktn 0.24).
# A generated property with one of these names would shadow (or, through jsii, override) the
# base member, so such attributes get an ``_attribute`` suffix. tests/test_codegen.py checks this
# list still covers both runtimes' classes (through codegen, which re-exports it).
RESERVED = frozenset(
    {
        "add_move_target",
        "add_override",
        "alias",
        "cdktf_stack",
        "connection",
        "count",
        "depends_on",
        "for_each",
        "fqn",
        "friendly_unique_id",
        "get_any_map_attribute",
        "get_boolean_attribute",
        "get_boolean_map_attribute",
        "get_list_attribute",
        "get_number_attribute",
        "get_number_list_attribute",
        "get_number_map_attribute",
        "get_string_attribute",
        "get_string_map_attribute",
        "has_resource_move",
        "id_",
        "import_from",
        "interpolation_for_attribute",
        "is_construct",
        "is_terraform_data_source",
        "is_terraform_element",
        "is_terraform_provider",
        "is_terraform_resource",
        "lifecycle",
        "meta_attributes",
        "move_from_id",
        "move_to",
        "move_to_id",
        "node",
        "override_logical_id",
        "provider",
        "provisioners",
        "reset_override_logical_id",
        "scope",
        "terraform_generator_metadata",
        "terraform_meta_arguments",
        "terraform_provider_source",
        "terraform_resource_type",
        "to_hcl_terraform",
        "to_metadata",
        "to_string",
        "to_terraform",
        "with_",
    }
)

_PRIMITIVE_IN = {"string": "str", "number": "float | int", "bool": "bool | _core.IResolvable"}
_PRIMITIVE_ELEM = {"string": "str", "number": "float | int", "bool": "bool"}


# --------------------------------------------------------------------------- naming


def camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_\-]", name) if part)


def upper_snake(class_name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", class_name).upper()


def py_name(tf_name: str) -> str:
    """Python identifier for a Terraform attribute: the same name unless that cannot work."""
    name = re.sub(r"\W", "_", tf_name)
    if keyword.iskeyword(name) or name in RESERVED:
        return f"{name}_attribute"
    return name


def resource_class_name(pin: ProviderPin, tf_type: str) -> str:
    prefix = f"{pin.name}_"
    return camel(tf_type[len(prefix) :] if tf_type.startswith(prefix) else tf_type)


def data_source_class_name(tf_type: str) -> str:
    return "Data" + camel(tf_type)


def provider_class_name(pin: ProviderPin) -> str:
    return camel(pin.name) + "Provider"


def doc_text(text: str, *, first_paragraph: bool = True) -> str:
    """A description made safe for a one-paragraph docstring (ASCII, no quote/escape traps)."""
    if first_paragraph:
        text = text.strip().split("\n\n")[0]
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = " ".join(text.split())
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if text.endswith('"'):
        text += "."
    return text


# --------------------------------------------------------------------------- model -> context


@dataclass
class Field:
    tf_name: str
    py_name: str
    in_type: str  # Python type of the input (without "| None")
    required: bool
    is_input: bool
    getter: str | None  # cdktf method used by the property
    out_type: str
    spec: str  # runtime.Spec field expression
    doc: str
    flags: str


@dataclass
class TypedDictDef:
    name: str
    spec_var: str
    fields: list[Field]
    doc: str
    class_syntax: bool


@dataclass
class ClassDef:
    name: str
    kind: str  # resource | data | provider
    tf_type: str
    spec_var: str
    fields: list[Field]
    doc: str
    schema_version: int


@dataclass
class Module:
    pin: ProviderPin
    pin_var: str
    typed_dicts: list[TypedDictDef] = field(default_factory=list)
    classes: list[ClassDef] = field(default_factory=list)


def cty_literal(t: Any) -> str:
    if isinstance(t, str):
        return f'"{t}"'
    if isinstance(t, list) and t[0] == "object":
        inner = ", ".join(f'"{k}": {cty_literal(v)}' for k, v in sorted(t[1].items()))
        return f'("object", {{{inner}}})'
    if isinstance(t, list) and t[0] == "tuple":
        return f'("tuple", ({", ".join(cty_literal(v) for v in t[1])},))'
    return f'("{t[0]}", {cty_literal(t[1])})'


def elem_type(t: Any) -> str:
    if isinstance(t, str):
        return _PRIMITIVE_ELEM.get(t, "Any")
    kind = t[0]
    if kind in ("list", "set"):
        return f"Sequence[{elem_type(t[1])}]"
    if kind == "map":
        return f"Mapping[str, {elem_type(t[1])}]"
    if kind == "object":
        return "Mapping[str, Any]"
    return "Sequence[Any]"


def input_type(t: Any) -> str:
    if isinstance(t, str):
        return _PRIMITIVE_IN.get(t, "Any")
    return f"{elem_type(t)} | _core.IResolvable"


def getter_for(t: Any) -> tuple[str, str]:
    if t == "string":
        return "get_string_attribute", "str"
    if t == "number":
        return "get_number_attribute", "float | int"
    if t == "bool":
        return "get_boolean_attribute", "_core.IResolvable"
    if isinstance(t, list) and t[0] in ("list", "set"):
        if t[1] == "string":
            return "get_list_attribute", "list[str]"
        if t[1] == "number":
            return "get_number_list_attribute", "list[float | int]"
    if isinstance(t, list) and t[0] == "map":
        if t[1] == "string":
            return "get_string_map_attribute", "Mapping[str, str]"
        if t[1] == "number":
            return "get_number_map_attribute", "Mapping[str, float | int]"
        if t[1] == "bool":
            return "get_boolean_map_attribute", "Mapping[str, bool]"
    return "interpolation_for_attribute", "_core.IResolvable"


def flags_of(a: sch.Attribute) -> str:
    names = ("required", "optional", "computed", "sensitive", "write_only", "deprecated")
    return ", ".join(n for n in names if getattr(a, n))


class Builder:
    def __init__(self, pin: ProviderPin, pin_var: str) -> None:
        self.module = Module(pin=pin, pin_var=pin_var)

    def object_fields(
        self, owner: str, attributes: Iterable[sch.Attribute], blocks: Iterable[sch.BlockType]
    ) -> list[Field]:
        fields: list[Field] = []
        for a in attributes:
            if a.nested is not None and not a.is_input:
                in_t, spec = "", ""
                getter, out_t = "interpolation_for_attribute", "_core.IResolvable"
            elif a.nested is not None:
                td = self.typed_dict(owner + camel(a.name), a.nested.attributes, (), a.description)
                in_t, spec = self.nested_types(
                    td, a.nested.nesting_mode, block=False, max_one=False
                )
                getter, out_t = "interpolation_for_attribute", "_core.IResolvable"
            else:
                in_t, spec = input_type(a.type), cty_literal(a.type)
                getter, out_t = getter_for(a.type)
            fields.append(
                Field(
                    tf_name=a.name,
                    py_name=py_name(a.name),
                    in_type=in_t,
                    required=a.required,
                    is_input=a.is_input,
                    getter=getter,
                    out_type=out_t,
                    spec=spec,
                    doc=doc_text(a.description),
                    flags=flags_of(a),
                )
            )
        for b in blocks:
            td = self.typed_dict(
                owner + camel(b.name), b.block.attributes, b.block.block_types, b.block.description
            )
            max_one = b.nesting_mode in ("list", "set") and b.max_items == 1
            mode = "single" if b.nesting_mode == "group" else b.nesting_mode
            in_t, spec = self.nested_types(td, mode, block=True, max_one=max_one)
            fields.append(
                Field(
                    tf_name=b.name,
                    py_name=py_name(b.name),
                    in_type=in_t,
                    required=b.min_items > 0,
                    is_input=True,
                    getter="interpolation_for_attribute",
                    out_type="_core.IResolvable",
                    spec=spec,
                    doc=doc_text(b.block.description),
                    flags=f"block, {b.nesting_mode}"
                    + (f", max_items={b.max_items}" if b.max_items else "")
                    + (f", min_items={b.min_items}" if b.min_items else ""),
                )
            )
        return sorted(fields, key=lambda f: f.tf_name)

    def nested_types(
        self, td: TypedDictDef, mode: str, *, block: bool, max_one: bool
    ) -> tuple[str, str]:
        if mode == "single" or max_one:
            in_t = f"{td.name} | _core.IResolvable"
        elif mode == "map":
            in_t = f"Mapping[str, {td.name}] | _core.IResolvable"
        else:
            in_t = f"Sequence[{td.name}] | _core.IResolvable"
        args = [f'"{mode}"', td.spec_var]
        if block:
            args.append("block=True")
        if max_one:
            args.append("max_one=True")
        return in_t, f"_rt.Nested({', '.join(args)})"

    def typed_dict(
        self,
        name: str,
        attributes: Iterable[sch.Attribute],
        blocks: Iterable[sch.BlockType],
        description: str,
    ) -> TypedDictDef:
        fields = [f for f in self.object_fields(name, attributes, blocks) if f.is_input]
        td = TypedDictDef(
            name=name,
            spec_var=f"_{upper_snake(name)}_SPEC",
            fields=fields,
            doc=doc_text(description) or f"Object type {name}.",
            class_syntax=all(
                f.tf_name.isidentifier() and not keyword.iskeyword(f.tf_name) for f in fields
            ),
        )
        self.module.typed_dicts.append(td)  # children were appended first: definition order
        return td

    def top(self, kind: str, name: str, tf_type: str, schema: sch.Schema) -> None:
        fields = self.object_fields(name, schema.block.attributes, schema.block.block_types)
        self.module.classes.append(
            ClassDef(
                name=name,
                kind=kind,
                tf_type=tf_type,
                spec_var=f"_{upper_snake(name)}_SPEC",
                fields=fields,
                doc=doc_text(schema.block.description),
                schema_version=schema.version,
            )
        )


def build(provider: sch.ProviderSchema, pin_var: str) -> Module:
    pin = provider.pin
    b = Builder(pin, pin_var)
    b.top("provider", provider_class_name(pin), pin.name, provider.provider)
    for tf_type in pin.resources:
        b.top("resource", resource_class_name(pin, tf_type), tf_type, provider.resources[tf_type])
    for tf_type in pin.data_sources:
        b.top("data", data_source_class_name(tf_type), tf_type, provider.data_sources[tf_type])
    return b.module
