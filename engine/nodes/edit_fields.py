"""The Edit Fields (Set) node: fields written on a copy of every item, in two versions.

Version 1 writes each field's value as rendered and drops the item's other fields with
`keepOnlySet`; version 2 names that `include` and converts each value to its field's `type`.
Field names are dotted paths (`customer.email`: engine.nodes.paths). What a node writes is
counted against the output limit as items are built (engine/nodes/growth.py): a value can be
written into every item, or into many fields, by reference.

Over 400 lines, but one cohesive thing: the Edit Fields node, both versions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from engine import json_depth
from engine.expressions import CompiledParameters
from engine.expressions.functions import to_text
from engine.node_catalog import CORE, Catalog, ParameterHint
from engine.node_types import NodeGroup, NodeType, ParameterMigrationError
from engine.nodes import schema
from engine.nodes.base import Item, NodeRunContext, PortItems
from engine.nodes.growth import Growth
from engine.nodes.parameters import (
    as_number,
    choice,
    chunks,
    flag,
    invalid_parameter,
    objects,
    per_item,
    shown,
    text,
)
from engine.nodes.paths import set_path, split_path

Assignment = tuple[tuple[str, ...], Any]


def _checked_assignments(
    parameters: dict[str, Any], paths: dict[str, tuple[str, ...]]
) -> tuple[list[Assignment], bool]:
    assignments: list[Assignment] = []
    for index, field in enumerate(objects(parameters, "fields")):
        name = text(field, "name", prefix=f"fields[{index}].")
        path = paths[name] = split_path(name)
        assignments.append((path, field.get("value")))
    return assignments, flag(parameters, "keepOnlySet", default=False)


def _assign(item: Item, assignments: list[Assignment], keep_only_set: bool) -> Item:
    result: Item = {} if keep_only_set else dict(item)
    for path, value in assignments:
        if len(path) == 1:
            result[path[0]] = value
        else:
            set_path(result, path, value)
    return result


def _set_rendered(
    item: Item, parameters: dict[str, Any], paths: dict[str, tuple[str, ...]]
) -> Item:
    """A copy of `item` with the fields of per-item rendered parameters written.

    `paths` holds the field names already checked: names rarely change from item to item,
    so the common case writes straight away and only a new name is checked.
    """
    fields = parameters.get("fields")
    keep_only_set = parameters.get("keepOnlySet", False)
    if type(fields) is list and fields and type(keep_only_set) is bool:
        result: Item = {} if keep_only_set else dict(item)
        try:
            for field in fields:
                path = paths[field["name"]]
                if len(path) == 1:
                    result[path[0]] = field.get("value")
                else:
                    set_path(result, path, field.get("value"))
        except (KeyError, TypeError, AttributeError):
            pass  # a name not seen yet, or a malformed entry: check them all below
        else:
            return result
    return _assign(item, *_checked_assignments(parameters, paths))


async def set_fields(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    """Set version 1: writes each field on a copy of every item; `keepOnlySet` drops the
    other fields.

    The values written are counted against the output limit as items are built (a value can
    be written into every item, or into many fields, by reference: engine/nodes/growth.py).
    """
    return await _set(ctx, inputs, None)


async def set_fields_v2(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    """Set version 2: as version 1, with `include` (`all_fields`, `only_set`) in place of
    `keepOnlySet`, and each field's value converted to its `type` (`auto`: as it is)."""
    return await _set(ctx, inputs, _as_version_1)


async def _set(
    ctx: NodeRunContext,
    inputs: PortItems,
    as_version_1: Callable[[dict[str, Any]], dict[str, Any]] | None,
) -> PortItems:
    items = inputs.get("main", [])
    results: list[Item] = []
    growth = Growth(ctx)
    names = _field_names(ctx.compiled)
    # Field names checked already: those of the source when fixed, else found as rendered.
    paths = names.paths if names.paths is not None else {}
    if ctx.compiled.is_constant:
        derived = ctx.compiled.derived
        checked = derived.get("set.constant")
        if checked is None:  # checked once per plan (a bad one is refused on every run)
            constant = ctx.parameters()
            if as_version_1 is not None:
                constant = as_version_1(constant)
            checked = derived["set.constant"] = _checked_assignments(constant, paths)
        assignments, keep_only_set = checked
        if growth.active:
            written = sum(map(growth.size, _last_writes(assignments)))
            growth.repeat(written, len(items))
        for _, chunk in chunks(items):
            results.extend(_assign(item, assignments, keep_only_set) for item in chunk)
            await ctx.checkpoint()
        return {"main": results}
    parameters = per_item(ctx)
    # Version 2 with a fixed `include` and every field of type auto (the common case) reads
    # as version 1 without converting anything: only `keepOnlySet` needs writing in.
    plain = _plain_version_2(ctx.compiled) if as_version_1 is not None else None
    distinct = names.distinct
    room = growth.room()
    size = growth.size
    written = 0
    for index, item in enumerate(items):
        rendered = parameters(item, index)
        if plain is not None:  # a fresh dict each rendering: version 1's key written in
            rendered["keepOnlySet"] = plain
        elif as_version_1 is not None:
            rendered = as_version_1(rendered)
        results.append(_set_rendered(item, rendered, paths))
        if room is not None:
            if distinct:  # inline: this runs for every item of every Set node
                for field in rendered["fields"]:
                    value = field.get("value")
                    kind = type(value)
                    if kind is str:
                        written += len(value)
                    elif kind is list or kind is dict:
                        written += size(value)
            else:
                written += _written_bytes(growth, rendered, paths)
            if written > room:
                growth.add(written, index)  # past the limit: raises
        if ctx.due():
            await ctx.pause()
    return {"main": results}


INCLUDES = ("all_fields", "only_set")


FIELD_TYPES = ("auto", "string", "number", "boolean", "object", "array")


def _as_version_1(parameters: dict[str, Any]) -> dict[str, Any]:
    """Set version 2's rendered parameters in version 1's form: `include` read into
    `keepOnlySet`, each field's value converted to its type."""
    include = choice(parameters, "include", INCLUDES, default="all_fields")
    converted = {name: value for name, value in parameters.items() if name != "include"}
    converted["keepOnlySet"] = include == "only_set"
    fields = parameters.get("fields")
    if isinstance(fields, list):
        converted["fields"] = [
            _typed(field, index) if isinstance(field, dict) else field
            for index, field in enumerate(fields)
        ]
    return converted


def _plain_version_2(compiled: CompiledParameters) -> bool | None:
    """`keepOnlySet` for a Set version 2 source whose `include` is fixed and whose fields
    are all of type auto (so that nothing is converted), worked out once per plan; None
    when its parameters must be read item by item."""
    derived = compiled.derived
    if "set.plain" not in derived:
        source = compiled.source
        plain: bool | None = None
        if isinstance(source, dict):
            include = source.get("include", "all_fields")
            fields = source.get("fields")
            if (
                include in INCLUDES
                and isinstance(fields, list)
                and all(isinstance(f, dict) and f.get("type", "auto") == "auto" for f in fields)
            ):
                plain = include == "only_set"
        derived["set.plain"] = plain
    return cast(bool | None, derived["set.plain"])


def _typed(field: dict[str, Any], index: int) -> dict[str, Any]:
    prefix = f"fields[{index}]."
    kind = choice(field, "type", FIELD_TYPES, default="auto", prefix=prefix)
    if kind == "auto":
        return field
    value = field.get("value")
    return {**field, "value": _converted(value, kind, f"{prefix}value")}


def _converted(value: Any, kind: str, where: str) -> Any:
    """`value` as a JSON value of `kind`, or INVALID_PARAMETER naming `where`."""
    if kind == "string":
        return value if isinstance(value, str) else to_text(value)
    if kind == "number":
        number = as_number(value)
        if number is None or (isinstance(number, float) and not math.isfinite(number)):
            raise invalid_parameter(where, f"must be a number, got {shown(value)}")
        return number
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise invalid_parameter(where, f"must be true or false, got {shown(value)}")
    wanted = dict if kind == "object" else list
    if isinstance(value, str):
        try:  # orjson: no NaN or Infinity; json_depth: no nesting past the limit
            value = json_depth.loads(value)
        except (ValueError, json_depth.JsonTooDeep):
            problem = f"must be JSON of an {kind}, got {shown(value)}"
            raise invalid_parameter(where, problem) from None
    if not isinstance(value, wanted):
        raise invalid_parameter(where, f"must be an {kind}, got {shown(value)}")
    return value


def migrate_set_to_version_2(parameters: dict[str, Any]) -> dict[str, Any]:
    """Set version 1's parameters as version 2's: `keepOnlySet` becomes `include`, each field
    gets type `auto` (its value as it is, as version 1 wrote it)."""
    problems: list[tuple[str, str]] = []
    migrated = {name: value for name, value in parameters.items() if name != "keepOnlySet"}
    keep_only_set = parameters.get("keepOnlySet", False)
    if isinstance(keep_only_set, bool):
        migrated["include"] = "only_set" if keep_only_set else "all_fields"
    else:
        problems.append(
            (
                "keepOnlySet",
                f"is {shown(keep_only_set)}, not true or false: version 2's Include is a "
                "fixed choice, set it by hand",
            )
        )
    fields = parameters.get("fields")
    if isinstance(fields, list):
        typed = []
        for index, field in enumerate(fields):
            if isinstance(field, dict):
                typed.append({**field, "type": "auto"})
            else:
                problems.append((f"fields[{index}]", f"is {shown(field)}, not a field"))
        migrated["fields"] = typed
    if problems:
        raise ParameterMigrationError(problems)
    return migrated


def _written_bytes(
    growth: Growth, rendered: dict[str, Any], paths: dict[str, tuple[str, ...]]
) -> int:
    """What the rendered `fields` write (after `_set_rendered` checked them), as counted by
    `growth`, when some writes replace or write into others (`_kept_writes`; `_set` counts
    the other case inline)."""
    fields = rendered["fields"]
    return sum(map(growth.size, _last_writes((paths[f["name"]], f.get("value")) for f in fields)))


@dataclass(frozen=True, slots=True)
class _FieldNames:
    """What a Set node's source says of its field names, worked out once per plan."""

    # Each name's path, when every name is fixed text (no expression): shared by all runs.
    paths: dict[str, tuple[str, ...]] | None
    # The names are fixed and no write replaces or writes into another, so that every value
    # written stays whole in the item (`_kept_writes`).
    distinct: bool


_NO_FIXED_NAMES = _FieldNames(None, distinct=False)


def _field_names(compiled: CompiledParameters) -> _FieldNames:
    known = compiled.derived.get("set.names")
    if known is None:
        known = compiled.derived["set.names"] = _fixed_names(compiled.source)
    return cast(_FieldNames, known)


def _fixed_names(source: Any) -> _FieldNames:
    fields = source.get("fields") if isinstance(source, dict) else None
    if not isinstance(fields, list) or not fields:
        return _NO_FIXED_NAMES
    paths: dict[str, tuple[str, ...]] = {}
    for field in fields:
        name = field.get("name") if isinstance(field, dict) else None
        # Names `text` would refuse are left to it: refused when the node runs.
        if not isinstance(name, str) or "{{" in name or not name.strip():
            return _NO_FIXED_NAMES
        paths[name] = split_path(name)
    ordered = [paths[field["name"]] for field in fields]
    return _FieldNames(paths, distinct=len(_kept_writes(ordered)) == len(ordered))


def _last_writes(assignments: Iterable[Assignment]) -> list[Any]:
    """The values of the writes sure to be in the item whole, so that their sizes add up to
    a lower bound: `_kept_writes` of the assignments' paths."""
    listed = list(assignments)
    return [listed[index][1] for index in _kept_writes([path for path, _ in listed])]


def _kept_writes(paths: list[tuple[str, ...]]) -> list[int]:
    """The indexes of the writes that no later write replaces (a later write to the same
    path or to one of its prefixes) or writes into (a later write under its path): the
    values left whole in the item. They sit in separate subtrees, so their sizes add up."""
    later: set[tuple[str, ...]] = set()  # paths written later
    under_later: set[tuple[str, ...]] = set()  # strict prefixes of paths written later
    kept = []
    for index in range(len(paths) - 1, -1, -1):
        path = paths[index]
        replaced = any(path[:length] in later for length in range(1, len(path) + 1))
        if not replaced and path not in under_later:
            kept.append(index)
        later.add(path)
        under_later.update(path[:length] for length in range(1, len(path)))
    kept.reverse()
    return kept


def _name_and_value() -> dict[str, schema.JSONSchema]:
    """The `name` and `value` of a field to set, in both versions."""
    return {
        "name": schema.text(
            "Name",
            "The field to write on each item; a dotted name such as 'customer.address.city' "
            "writes into nested objects, creating them as needed.",
        ),
        "value": schema.any_value(
            "Value",
            "What to write: fixed text, a number, or an expression such as "
            "{{ $json.price * 2 }}. Left out, the field is set to null.",
        ),
    }


_NAME_AND_VALUE_HINTS = (
    ParameterHint("fields[].name", placeholder="customer.email"),
    ParameterHint("fields[].value", placeholder="{{ $json.email }}"),
)


def set_type() -> NodeType:
    field = schema.object_of(
        {
            **_name_and_value(),
        },
        required=("name",),
    )
    return NodeType(
        name="set",
        version=1,
        display_name="Edit Fields (Set)",
        description="Adds or changes fields on every item.",
        group=NodeGroup.TRANSFORM,
        parameters_schema=schema.parameters(
            {
                "fields": schema.list_of(
                    "Fields to set", "The fields to add or change.", field, min_items=1
                ),
                "keepOnlySet": schema.flag(
                    "Keep only these fields",
                    "Drop every other field from the items, keeping only the ones set here.",
                    default=False,
                ),
            },
            required=("fields",),
        ),
        catalog=Catalog(
            category=CORE,
            subcategory="Data transformation",
            icon="fa:pen",
            documentation_url="docs/api.md#node-types",
            hints=(
                *_NAME_AND_VALUE_HINTS,
                ParameterHint("keepOnlySet"),
            ),
            defaults={"fields": [{"name": "", "value": ""}]},
        ),
        execute=set_fields,
        deprecated="version 2 converts each field to its type and names what the item keeps "
        "with include",
    )


def set_type_v2() -> NodeType:
    """Set version 2: `include` in place of `keepOnlySet`, and a type per field."""
    field = schema.object_of(
        {
            **_name_and_value(),
            "type": schema.choice(
                "Type",
                "What the value must be: auto (as it is), string (text; anything else as "
                "its text), number (numeric text read as a number), boolean (true/false, or "
                "that text), object or array (JSON text parsed). A value that cannot be "
                "converted fails the node, naming the field.",
                FIELD_TYPES,
                default="auto",
            ),
        },
        required=("name",),
    )
    return NodeType(
        name="set",
        version=2,
        display_name="Edit Fields (Set)",
        description="Adds or changes fields on every item, each converted to its type.",
        group=NodeGroup.TRANSFORM,
        parameters_schema=schema.parameters(
            {
                "fields": schema.list_of(
                    "Fields to set", "The fields to add or change.", field, min_items=1
                ),
                "include": schema.choice(
                    "Include",
                    "all_fields: the item's other fields stay; only_set: the item holds only "
                    "the fields set here.",
                    INCLUDES,
                    default="all_fields",
                ),
            },
            required=("fields",),
        ),
        catalog=Catalog(
            category=CORE,
            subcategory="Data transformation",
            icon="fa:pen",
            documentation_url="docs/node-types.md#versions",
            hints=(
                *_NAME_AND_VALUE_HINTS,
                ParameterHint("fields[].type"),
                ParameterHint("include"),
            ),
            defaults={"fields": [{"name": "", "value": "", "type": "auto"}]},
        ),
        execute=set_fields_v2,
        migrate=migrate_set_to_version_2,
    )
