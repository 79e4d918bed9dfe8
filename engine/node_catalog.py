"""What the editor needs to show a node type: its place in the palette and its form.

A `NodeType` describes what a node does and accepts; its `Catalog` says how to present it:
category and subcategory of the palette, an icon, a documentation link, a subtitle shown
under the node on the canvas, how each parameter is rendered (`ParameterHint`: order,
placeholder, widget, and when it shows, like n8n's `displayOptions`) and the parameters a
new node starts with. Hints are checked against the type's parameters schema when the type
is registered (`catalog_problems`): a hint for a parameter the schema does not have, or a
condition on a value it cannot take, is refused like an invalid schema.

Parameters are named by path: `url` for a top-level parameter, `fields[].value` for the
`value` of every entry of the list `fields`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Widget(StrEnum):
    """How a text or JSON parameter is edited."""

    TEXT = "text"  # one line
    MULTILINE = "multiline"
    CODE = "code"  # a code editor (the Code node's script)
    PASSWORD = "password"  # noqa: S105 (a widget, not a secret): masked as typed
    JSON = "json"  # a JSON editor


@dataclass(frozen=True, slots=True)
class ParameterHint:
    """How the editor renders one parameter (see the module's text for paths)."""

    parameter: str
    placeholder: str = ""
    widget: Widget | None = None
    # Shown only while each of these parameters holds one of its values (all must hold);
    # empty: always shown.
    show_when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Catalog:
    """A node type's place in the palette and the presentation of its form."""

    category: str = "Community"
    subcategory: str = ""
    # An icon name (`fa:globe`, Font Awesome's names as n8n uses them) or a `data:image/...`
    # URI.
    icon: str = ""
    # An http(s) URL, or a page of Loom's docs (`docs/api.md#webhooks`).
    documentation_url: str = ""
    # Shown under the node's name on the canvas: `{method} {url}` puts the node's own
    # parameters in (a parameter that is not set leaves its placeholder out).
    subtitle: str = ""
    # Hints, in the order the form shows the parameters; parameters without a hint follow,
    # in the schema's order.
    hints: tuple[ParameterHint, ...] = ()
    # What a new node's parameters hold besides the schema's top-level defaults.
    defaults: Mapping[str, Any] = field(default_factory=dict)


CORE = "Core"

_ICON = re.compile(
    r"^(?:[a-z]+:[a-z0-9-]+|data:image/(?:png|svg\+xml|jpeg|gif|webp);base64,[A-Za-z0-9+/=]+)$"
)
_SUBTITLE_FIELD = re.compile(r"\{([^{}]*)\}")
# An http(s) URL, or a page of Loom's own docs (`docs/api.md#webhooks`).
_URL = re.compile(r"^(?:https?://\S+|docs/[\w./-]+(?:#[\w-]+)?)$")


def parameter_schema(schema: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    """The schema of the parameter at `path` (`fields[].value`), or None when it has none."""
    current: Any = schema
    for part in path.split("."):
        in_list = part.endswith("[]")
        name = part[:-2] if in_list else part
        properties = current.get("properties") if isinstance(current, Mapping) else None
        if not isinstance(properties, Mapping) or name not in properties:
            return None
        current = properties[name]
        if in_list:
            current = current.get("items") if isinstance(current, Mapping) else None
            if not isinstance(current, Mapping):
                return None
    return current if isinstance(current, Mapping) else None


def default_parameters(schema: Mapping[str, Any], catalog: Catalog) -> dict[str, Any]:
    """A new node's parameters: the schema's top-level defaults, then the catalog's."""
    properties = schema.get("properties")
    found: dict[str, Any] = {}
    if isinstance(properties, Mapping):
        for name, property_schema in properties.items():
            if isinstance(property_schema, Mapping) and "default" in property_schema:
                found[name] = property_schema["default"]
    found.update(catalog.defaults)
    return found


def catalog_problems(schema: Mapping[str, Any], catalog: Catalog) -> list[str]:
    """Every way the catalog disagrees with the parameters schema, or is malformed."""
    return list(_problems(schema, catalog))


_COMPOSITION = ("$ref", "allOf", "anyOf", "oneOf")


def _composed(schema: Any) -> bool:
    """Whether the schema builds parameters by reference or composition anywhere, which
    `parameter_schema` does not follow."""
    pending = [schema]
    while pending:
        current = pending.pop()
        if isinstance(current, Mapping):
            if any(keyword in current for keyword in _COMPOSITION):
                return True
            pending.extend(current.values())
        elif isinstance(current, list):
            pending.extend(current)
    return False


def _allows(allowed: list[Any], value: Any) -> bool:
    """`value in allowed` as JSON sees it: `true` is not `1`."""
    return any(type(option) is type(value) and option == value for option in allowed)


def _problems(schema: Mapping[str, Any], catalog: Catalog) -> Iterator[str]:
    if not catalog.category.strip():
        yield "the category is empty"
    if catalog.icon and not _ICON.match(catalog.icon):
        yield f"the icon {catalog.icon[:60]!r} is neither an icon name nor a data:image URI"
    if catalog.documentation_url and not _URL.match(catalog.documentation_url):
        yield (
            f"the documentation URL {catalog.documentation_url[:200]!r} is neither an http(s) "
            "URL nor a docs/ page"
        )
    for name in _SUBTITLE_FIELD.findall(catalog.subtitle):
        if parameter_schema(schema, name) is None and not _composed(schema):
            yield f"the subtitle names {name!r}, which is not a parameter"
    # Paths into a schema built by $ref or composition cannot be followed here: hints on
    # them are trusted rather than refused.
    unresolvable = _composed(schema)
    seen: set[str] = set()
    for hint in catalog.hints:
        where = f"the hint for {hint.parameter!r}"
        if hint.parameter in seen:
            yield f"{where} is given twice"
        seen.add(hint.parameter)
        if parameter_schema(schema, hint.parameter) is None and not unresolvable:
            yield f"{where} names a parameter the schema does not have"
        for other, values in hint.show_when.items():
            other_schema = parameter_schema(schema, other)
            if other_schema is None:
                if not unresolvable:
                    yield f"{where} shows it depending on {other!r}, which is not a parameter"
                continue
            if other == hint.parameter:
                yield f"{where} shows it depending on itself"
            if not values:
                yield f"{where} lists no value of {other!r} to show it for"
            allowed = other_schema.get("enum")
            if isinstance(allowed, list):
                for value in values:
                    if not _allows(allowed, value):
                        yield f"{where} depends on {other!r} being {value!r}, which it cannot be"
    properties = schema.get("properties")
    names = set(properties) if isinstance(properties, Mapping) else set()
    for name in catalog.defaults:
        if name not in names:
            yield f"the default parameters name {name!r}, which is not a parameter"
