"""Declarative node types: node types that are data, made by a workspace over the API.

A definition (its form: engine/declarative_schema.py) gives what any node type has (display
name, description, catalog, a parameters JSON Schema, credential kinds) and, instead of
code, how to call an HTTP API for each item:

- `requestTemplate`: method, URL, query, headers and body; their strings may hold `{{ }}`
  expressions over `$parameter` (the node's parameters, rendered for the item) and `$json`
  (the item), in the same sandboxed language and under the same limits as any parameter;
- `responseMapping`: a path to select in the answer, whether to split an array into items,
  fields to keep or drop;
- `pagination`: follow a next-page URL, or send a cursor back, up to `maxPages` pages.

The behaviour (engine/nodes/declarative_request.py) sends requests through the HTTP Request
node's own code (engine/nodes/http.py): the process's guarded client (SSRF guard), the
node's credential, retries, size and time limits.

`definition_problems` checks a definition whole and returns every problem with its path;
`declared_node_type` turns a checked one into a `NodeType`, kept per stored version (a
version never changes).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import unquote

from engine.credentials import KINDS
from engine.declarative_schema import DEFINITION_SCHEMA
from engine.expressions import CompiledParameters, ExpressionError, compile_parameters
from engine.expressions.lexer import split_template
from engine.node_catalog import (
    Catalog,
    ParameterHint,
    Widget,
    catalog_problems,
    default_parameters,
)
from engine.node_types import NodeGroup, NodeType
from engine.nodes.declarative_request import DeclarativeRequest
from engine.validation import Problem

# A workspace's types are `ws.<snake_case>`: the `ws` namespace is theirs.
DECLARATIVE_PREFIX = "ws."
DECLARATIVE_NAME = re.compile(r"^ws\.[a-z][a-z0-9_]{0,62}$")
DEFAULT_CATEGORY = "Workspace"
DEFAULT_PARAMETERS_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
_URL_START = re.compile(r"^https?://[^\s/?#{}]")
# The request template's parts that are rendered; the others are literal settings.
_RENDERED = ("url", "query", "headers", "body")


def is_declarative(name: str) -> bool:
    """Whether a node type name is in a workspace's namespace."""
    return name.startswith(DECLARATIVE_PREFIX)


def definition_problems(
    name: str | None, definition: Any, name_taken: Callable[[str], bool]
) -> list[Problem]:
    """Every problem of a definition (and of `name`, when one is being given), each with the
    path of what is wrong: nothing is stored unless this is empty. `name_taken`: whether the
    name belongs to a built-in or plugin type."""
    problems: list[Problem] = []
    if name is not None:
        problems.extend(_name_problems(name, name_taken))
    problems.extend(_problems(definition))
    return problems


def _problem(code: str, path: str, message: str) -> Problem:
    return Problem(code, message, None, path)


def _name_problems(name: str, name_taken: Callable[[str], bool]) -> Iterator[Problem]:
    if not DECLARATIVE_NAME.match(name):
        yield _problem(
            "INVALID_NODE_TYPE_NAME",
            "name",
            f"{name[:80]!r} is not `ws.` followed by a snake_case name (a lower-case letter, "
            "then lower-case letters, digits or underscores; 64 characters at most)",
        )
    elif name_taken(name):
        yield _problem(
            "NODE_TYPE_NAME_TAKEN",
            "name",
            f"{name!r} is the name of an installed node type; a workspace's type cannot shadow it",
        )


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _problems(definition: Any) -> Iterator[Problem]:
    from jsonschema import Draft202012Validator

    structural = list(Draft202012Validator(DEFINITION_SCHEMA).iter_errors(definition))
    for error in structural:
        yield _problem("INVALID_DEFINITION", _path(error.absolute_path) or "input", error.message)
    if structural:
        return  # the checks below read the definition's parts as their form says
    schema = definition.get("parametersSchema", DEFAULT_PARAMETERS_SCHEMA)
    schema_valid = True
    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    for error in meta.iter_errors(schema):
        schema_valid = False
        where = _path(["parametersSchema", *error.absolute_path])
        yield _problem("INVALID_PARAMETERS_SCHEMA", where, error.message)
    if schema_valid and schema.get("type") != "object":
        schema_valid = False
        yield _problem(
            "INVALID_PARAMETERS_SCHEMA", "parametersSchema.type", "parameters are an object"
        )
    for where, message in _unusable_schema_parts(schema, schema, ["parametersSchema"]):
        schema_valid = False
        yield _problem("INVALID_PARAMETERS_SCHEMA", where, message)
    for index, kind in enumerate(definition.get("credentialKinds", ())):
        if kind not in KINDS:
            yield _problem(
                "UNKNOWN_CREDENTIAL_KIND",
                f"credentialKinds[{index}]",
                f"unknown credential kind {kind[:80]!r} (known: {', '.join(sorted(KINDS))})",
            )
    if schema_valid:
        yield from _catalog_problems(schema, definition.get("catalog") or {})
    template = definition["requestTemplate"]
    for error in compile_request(template)[1]:
        yield _problem("EXPRESSION_SYNTAX", f"requestTemplate.{error.path}", str(error.error))
    yield from _url_problems(template["url"])
    pagination = definition.get("pagination")
    if pagination is not None:
        given = [key for key in ("nextUrl", "cursor") if key in pagination]
        if len(given) != 1:
            yield _problem("INVALID_PAGINATION", "pagination", "give one of nextUrl and cursor")
        elif given == ["cursor"] and "cursorParameter" not in pagination:
            yield _problem(
                "INVALID_PAGINATION",
                "pagination.cursorParameter",
                "a cursor needs the query parameter that sends it back",
            )
    mapping = definition.get("responseMapping") or {}
    if "keep" in mapping and "drop" in mapping:
        yield _problem("INVALID_RESPONSE_MAPPING", "responseMapping", "give keep or drop, not both")


# Keywords whose checking could take unbounded time on a crafted value (a pattern with
# nested repeats): a workspace's schema, unlike a plugin's, is anyone's input.
_UNBOUNDED_KEYWORDS = frozenset({"pattern", "patternProperties"})


def _unusable_schema_parts(
    root: Any, value: Any, path: list[str | int]
) -> Iterator[tuple[str, str]]:
    """`$ref`s that are not pointers into the schema itself, or point at nothing (a remote
    reference is never fetched, so validating parameters against it would fail later), and
    keywords a workspace's schema may not use (`_UNBOUNDED_KEYWORDS`)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _UNBOUNDED_KEYWORDS:
                yield (
                    _path([*path, key]),
                    f"{key} is not allowed in a workspace's type: parameters are checked "
                    "with Python's regular expressions, whose matching time has no bound",
                )
            elif key in ("$ref", "$dynamicRef") and isinstance(item, str):
                if not _resolves(root, item):
                    yield (
                        _path([*path, key]),
                        f"{item[:200]!r} is not a JSON pointer to a part of this schema "
                        "(`#/$defs/name`)",
                    )
            else:
                yield from _unusable_schema_parts(root, item, [*path, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _unusable_schema_parts(root, item, [*path, index])


def _resolves(root: Any, reference: str) -> bool:
    """Whether `reference` is `#` or a JSON pointer (`#/$defs/name`) to a part of `root`."""
    if reference == "#":
        return True
    if not reference.startswith("#/"):
        return False
    current = root
    for part in reference[2:].split("/"):
        key = unquote(part).replace("~1", "/").replace("~0", "~")
        if isinstance(current, dict) and key in current:
            current = current[key]
        elif isinstance(current, list) and key.isdigit() and int(key) < len(current):
            current = current[int(key)]
        else:
            return False
    return True


def _catalog_problems(schema: Mapping[str, Any], given: Mapping[str, Any]) -> Iterator[Problem]:
    """The catalog checked as a built-in's is (`catalog_problems`), each hint alone so that a
    problem names the hint it is in."""
    catalog = catalog_of(given)
    for index, hint in enumerate(catalog.hints):
        alone = Catalog(category=catalog.category, hints=(hint,))
        for message in catalog_problems(schema, alone):
            yield _problem("INVALID_CATALOG", f"catalog.parameterHints[{index}].name", message)
        if any(other.parameter == hint.parameter for other in catalog.hints[:index]):
            yield _problem(
                "INVALID_CATALOG",
                f"catalog.parameterHints[{index}].name",
                f"the hint for {hint.parameter!r} is given twice",
            )
    for message in catalog_problems(schema, replace(catalog, hints=())):
        yield _problem("INVALID_CATALOG", "catalog", message)


def _url_problems(url: str) -> Iterator[Problem]:
    """The URL's literal start must be able to begin an http(s) URL: its scheme and host are
    the type's, not the workflow's (a template that starts with an expression is checked
    when it runs, as the HTTP Request node's URL is)."""
    try:
        segments = split_template(url)
    except ExpressionError:
        return  # reported as an expression that does not compile
    if not segments or segments[0].is_expression:
        return
    literal = segments[0].text
    whole = len(segments) == 1
    if whole:
        ok = bool(_URL_START.match(literal)) and not any(char.isspace() for char in literal)
    else:
        ok = bool(_URL_START.match(literal)) or any(
            scheme.startswith(literal) for scheme in ("http://", "https://")
        )
    if not ok:
        yield _problem(
            "INVALID_URL",
            "requestTemplate.url",
            f"{literal[:200]!r} cannot begin an http or https URL",
        )


def catalog_of(given: Mapping[str, Any]) -> Catalog:
    """A definition's `catalog` as the engine's `Catalog`."""
    return Catalog(
        category=given.get("category", DEFAULT_CATEGORY),
        subcategory=given.get("subcategory", ""),
        icon=given.get("icon", ""),
        documentation_url=given.get("documentationUrl", ""),
        subtitle=given.get("subtitle", ""),
        hints=tuple(
            ParameterHint(
                hint["name"],
                placeholder=hint.get("placeholder", ""),
                widget=Widget(hint["widget"]) if "widget" in hint else None,
                show_when={
                    name: tuple(values) for name, values in (hint.get("showWhen") or {}).items()
                },
            )
            for hint in given.get("parameterHints", ())
        ),
        defaults=dict(given.get("defaults") or {}),
    )


def compile_request(template: Mapping[str, Any]) -> tuple[CompiledParameters, list[Any]]:
    """The rendered parts of a request template compiled together (problems by path)."""
    return compile_parameters({part: template[part] for part in _RENDERED if part in template})


# Compiled types by stored version id: a stored version never changes.
_COMPILED: OrderedDict[str, NodeType] = OrderedDict()
MAX_COMPILED = 2048


def declared_node_type(
    version_id: str, name: str, version: int, definition: Mapping[str, Any]
) -> NodeType:
    """The `NodeType` of one stored, checked version of a declarative type (compiled once
    per process)."""
    known = _COMPILED.get(version_id)
    if known is not None:
        _COMPILED.move_to_end(version_id)
        return known
    built = build_node_type(name, version, definition)
    _COMPILED[version_id] = built
    while len(_COMPILED) > MAX_COMPILED:
        _COMPILED.popitem(last=False)
    return built


def build_node_type(name: str, version: int, definition: Mapping[str, Any]) -> NodeType:
    """A checked definition (`definition_problems` found nothing) as a `NodeType`."""
    template = definition["requestTemplate"]
    compiled, errors = compile_request(template)
    assert not errors  # checked when the definition was stored
    schema = definition.get("parametersSchema", DEFAULT_PARAMETERS_SCHEMA)
    catalog = catalog_of(definition.get("catalog") or {})
    behaviour = DeclarativeRequest(
        definition,
        compiled,
        defaults=default_parameters(schema, catalog),
        method=template.get("method", "GET"),
        settings={
            key: template[key]
            for key in ("timeoutSeconds", "maxResponseBytes", "retry")
            if key in template
        },
        mapping=definition.get("responseMapping") or {},
        pagination=definition.get("pagination"),
    )
    return NodeType(
        name=name,
        version=version,
        display_name=definition["displayName"],
        description=definition.get("description", ""),
        group=NodeGroup.ACTION,
        parameters_schema=schema,
        credential_kinds=tuple(definition.get("credentialKinds", ())),
        catalog=catalog,
        execute=behaviour,
        # `upgradeNode` carries a node's parameters over as they are: the new version's
        # schema then judges them, and what no longer fits shows as node issues.
        migrate=dict if version > 1 else None,
    )


def definition_of(node_type: NodeType) -> Mapping[str, Any] | None:
    """The definition a declarative type was made from; None for any other type."""
    behaviour = node_type.execute
    return behaviour.definition if isinstance(behaviour, DeclarativeRequest) else None
