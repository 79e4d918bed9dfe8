"""Validation of a workflow graph against the node type registry (pure, no I/O).

Every problem is reported at once, so the editor can mark them all. Problems come in two
severities:

- STRUCTURAL: the graph cannot be saved (duplicate ids, dangling edges, cycles, bad retry
  settings, values the database cannot store, ...).
- PARAMETER: a node's parameters do not satisfy its type's JSON Schema. The draft can be saved
  half-configured, but it cannot run or be published.

Parameter schemas are JSON Schema Draft 2020-12 with one addition: a property listed in
`required` whose value is a blank string counts as missing. A schema may word its errors with
`errorMessage`, a string or a mapping from keyword to string (the ajv-errors convention).
"""

from __future__ import annotations

import functools
import json
import math
import re
import unicodedata
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.exceptions import best_match
from jsonschema.validators import create

from engine.graph import Edge, Graph, Node
from engine.node_types import NodeType, NodeTypeRegistry


class Severity(StrEnum):
    """Whether a problem blocks saving (STRUCTURAL) or only running and publishing."""

    STRUCTURAL = "STRUCTURAL"
    PARAMETER = "PARAMETER"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a graph: a stable code, a message for the user, and where."""

    code: str
    message: str
    node_id: str | None = None
    # Path inside the node ("name", "parameters.fields[0].name") or the graph ("edges[2].target").
    field: str | None = None
    severity: Severity = Severity.STRUCTURAL

    def to_json(self) -> dict[str, Any]:
        """The problem as the API and the database carry it."""
        return {
            "code": self.code,
            "message": self.message,
            "nodeId": self.node_id,
            "field": self.field,
            "severity": self.severity.value,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Problem:
        """Rebuild a problem from `to_json` output."""
        return cls(
            code=data["code"],
            message=data["message"],
            node_id=data.get("nodeId"),
            field=data.get("field"),
            severity=Severity(data.get("severity", Severity.STRUCTURAL.value)),
        )


@dataclass(frozen=True, slots=True)
class GraphLimits:
    """Bounds that keep one workflow from costing unbounded time or storage."""

    max_nodes: int = 2000
    max_edges: int = 10000
    max_name_length: int = 128
    # Size of one node's parameters, JSON-encoded as UTF-8.
    max_parameters_bytes: int = 262144
    # Nesting of objects and lists in one node's parameters; keeps JSON encoding and schema
    # checks far from Python's recursion limit.
    max_parameters_depth: int = 64
    max_retry_attempts: int = 10
    max_timeout_s: float = 86400.0


DEFAULT_LIMITS = GraphLimits()


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """Everything wrong with one graph."""

    structural: tuple[Problem, ...]
    # Node id -> problems with that node's parameters (severity PARAMETER).
    parameters: dict[str, tuple[Problem, ...]]

    @property
    def ok(self) -> bool:
        """True when the graph may be saved: no structural problem."""
        return not self.structural

    @property
    def runnable(self) -> bool:
        """True when the graph may be run or published: no problem at all."""
        return not self.structural and not any(self.parameters.values())

    def all_problems(self) -> list[Problem]:
        """Structural problems first, then parameter problems in node order."""
        problems = list(self.structural)
        for node_problems in self.parameters.values():
            problems.extend(node_problems)
        return problems


# Control characters (C0, DEL, C1) in ids and names break logs, expressions and display; lone
# surrogates are not Unicode text at all and fail UTF-8 encoding on the way to the database.
_BAD_IN_LABEL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Free text (parameters, notes) may hold tabs and newlines, but PostgreSQL stores neither NUL
# nor lone surrogates in text or JSONB.
_BAD_IN_TEXT = re.compile(r"[\x00\ud800-\udfff]")
_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")

# How much of a user's value or name a message quotes, and how long a borrowed message may be.
_MAX_SHOWN_CHARS = 60
_MAX_MESSAGE_CHARS = 300
_MAX_OPTIONS_SHOWN = 20
_MAX_CYCLE_NODES_SHOWN = 30

PathSegment = str | int


def validate_graph(
    graph: Graph, registry: NodeTypeRegistry, limits: GraphLimits = DEFAULT_LIMITS
) -> ValidationReport:
    """Check a graph against the registry and the limits, reporting every problem found.

    A graph with more nodes or edges than the limits allow is refused with only that problem:
    checking it further would spend the time the limits exist to bound.
    """
    oversized = _size_problems(graph, limits)
    if oversized:
        return ValidationReport(structural=tuple(oversized), parameters={})
    structural: list[Problem] = []
    parameters: dict[str, list[Problem]] = {}
    nodes_by_id: dict[str, tuple[Node, NodeType | None]] = {}
    nodes_by_name: dict[str, Node] = {}
    for index, node in enumerate(graph.nodes):
        node_type = registry.get(node.type, node.type_version)
        structural.extend(_node_problems(index, node, node_type, registry, limits))
        # A blank id is reported as EMPTY_ID; edges cannot refer to it.
        has_id = bool(node.id.strip())
        if has_id and node.id in nodes_by_id:
            structural.append(
                Problem(
                    "DUPLICATE_NODE_ID",
                    f"Node id {_quote(node.id)} is used by more than one node",
                    node.id,
                    "id",
                )
            )
        elif has_id:
            nodes_by_id[node.id] = (node, node_type)
        name_key = unicodedata.normalize("NFC", node.name.strip())
        if name_key:
            first = nodes_by_name.setdefault(name_key, node)
            if first is not node:
                structural.append(
                    Problem(
                        "DUPLICATE_NODE_NAME",
                        f"Node name {_quote(node.name)} is already used by another node; "
                        "expressions refer to nodes by name, so names must be unique",
                        node.id,
                        "name",
                    )
                )
        scan = _scan_parameters(node, limits)
        structural.extend(scan.problems)
        if node_type is not None and scan.checkable:
            found = _parameter_problems(node, node_type, scan.encoded)
            if found:
                parameters.setdefault(node.id, []).extend(found)
    structural.extend(_edge_problems(graph, nodes_by_id))
    return ValidationReport(
        structural=tuple(structural),
        parameters={node_id: tuple(found) for node_id, found in parameters.items()},
    )


def _size_problems(graph: Graph, limits: GraphLimits) -> list[Problem]:
    problems = []
    if len(graph.nodes) > limits.max_nodes:
        problems.append(
            Problem(
                "TOO_MANY_NODES",
                f"The workflow has {len(graph.nodes)} nodes; the limit is {limits.max_nodes}",
                field="nodes",
            )
        )
    if len(graph.edges) > limits.max_edges:
        problems.append(
            Problem(
                "TOO_MANY_EDGES",
                f"The workflow has {len(graph.edges)} connections; the limit is {limits.max_edges}",
                field="edges",
            )
        )
    return problems


def _node_problems(
    index: int,
    node: Node,
    node_type: NodeType | None,
    registry: NodeTypeRegistry,
    limits: GraphLimits,
) -> Iterator[Problem]:
    """Problems of one node taken alone: id, name, type, retry and timeout."""
    if not node.id.strip():
        yield Problem("EMPTY_ID", f"Node {index + 1} has no id", None, f"nodes[{index}].id")
    elif match := _BAD_IN_LABEL.search(node.id):
        yield Problem(
            "INVALID_CHARACTER",
            f"Node id contains the character {_codepoint(match.group())}, which is not allowed",
            node.id,
            "id",
        )
    if not node.name.strip():
        yield Problem("EMPTY_NAME", "Node name must not be empty", node.id, "name")
    elif len(node.name) > limits.max_name_length:
        yield Problem(
            "NAME_TOO_LONG",
            f"Node name is {len(node.name)} characters long; the limit is {limits.max_name_length}",
            node.id,
            "name",
        )
    if match := _BAD_IN_LABEL.search(node.name):
        yield Problem(
            "INVALID_CHARACTER",
            f"Node name contains the character {_codepoint(match.group())}, which is not allowed",
            node.id,
            "name",
        )
    if node_type is None:
        if registry.has_name(node.type):
            available = ", ".join(
                str(known.version) for known in registry.all() if known.name == node.type
            )
            yield Problem(
                "UNKNOWN_TYPE_VERSION",
                f"Node type {_quote(node.type)} has no version {node.type_version} "
                f"(available: {available})",
                node.id,
                "typeVersion",
            )
        else:
            yield Problem(
                "UNKNOWN_NODE_TYPE",
                f"Unknown node type {_quote(node.type)}; is the plugin that provides it installed?",
                node.id,
                "type",
            )
    yield from _retry_problems(node, limits)
    if node.timeout_s is not None and not (
        _is_finite_number(node.timeout_s) and 0 < node.timeout_s <= limits.max_timeout_s
    ):
        yield Problem(
            "INVALID_TIMEOUT",
            f"Timeout must be more than 0 and at most {limits.max_timeout_s:g} seconds "
            f"(got {_show(node.timeout_s)})",
            node.id,
            "timeoutSeconds",
        )


def _retry_problems(node: Node, limits: GraphLimits) -> Iterator[Problem]:
    retry = node.retry
    if retry is None:
        return
    attempts = retry.max_attempts
    if (
        isinstance(attempts, bool)
        or not isinstance(attempts, int)
        or not 1 <= attempts <= limits.max_retry_attempts
    ):
        yield Problem(
            "INVALID_RETRY",
            f"Retry attempts must be a whole number from 1 to {limits.max_retry_attempts} "
            f"(got {_show(attempts)})",
            node.id,
            "retry.maxAttempts",
        )
    checks = (
        ("backoffSeconds", retry.backoff_s, 0.0, "Wait between retries"),
        ("backoffFactor", retry.backoff_factor, 1.0, "Retry backoff factor"),
        ("maxBackoffSeconds", retry.max_backoff_s, 0.0, "Longest wait between retries"),
    )
    for field, value, minimum, label in checks:
        if not (_is_finite_number(value) and value >= minimum):
            yield Problem(
                "INVALID_RETRY",
                f"{label} must be a number of at least {minimum:g} (got {_show(value)})",
                node.id,
                f"retry.{field}",
            )


@dataclass(frozen=True, slots=True)
class _ParameterScan:
    problems: list[Problem]
    # False when the parameters are too deep or too large for the schema check to be spent.
    checkable: bool
    # The parameters as JSON text, when they are plain JSON that the text stands for exactly.
    encoded: str | None


_JSON_SCALARS = (str, int, float, bool, type(None))
# How NUL and lone surrogates look in `json.dumps(..., ensure_ascii=False)` output. A match may
# be a false alarm (an escaped backslash before "u0000"); the walk that follows settles it.
_BAD_IN_ENCODED = re.compile(r"\\u0000|[\ud800-\udfff]")


def _scan_parameters(node: Node, limits: GraphLimits) -> _ParameterScan:
    """Text the database cannot store, nesting depth and size of a node's parameters."""
    problems = [
        _unstorable(node, field, match.group())
        for field, text in (("notes", node.notes), *_credential_texts(node))
        if (match := _BAD_IN_TEXT.search(text))
    ]
    too_deep, plain_json = _shape(node.parameters, limits.max_parameters_depth)
    if too_deep:
        problems.append(
            Problem(
                "PARAMETERS_TOO_DEEP",
                f"Parameters are nested more than {limits.max_parameters_depth} levels deep",
                node.id,
                "parameters",
            )
        )
        return _ParameterScan(problems, checkable=False, encoded=None)
    # default=str and skipkeys: values that are not JSON get a size estimate, never a crash.
    encoded = json.dumps(node.parameters, ensure_ascii=False, skipkeys=True, default=str)
    if _BAD_IN_ENCODED.search(encoded):
        problems.extend(_unstorable_parameters(node))
    size = len(encoded) if encoded.isascii() else len(encoded.encode("utf-8", "surrogatepass"))
    if size > limits.max_parameters_bytes:
        problems.append(
            Problem(
                "PARAMETERS_TOO_LARGE",
                f"Parameters take {size} bytes; the limit is {limits.max_parameters_bytes}",
                node.id,
                "parameters",
            )
        )
        return _ParameterScan(problems, checkable=False, encoded=None)
    return _ParameterScan(problems, checkable=True, encoded=encoded if plain_json else None)


def _shape(parameters: object, max_depth: int) -> tuple[bool, bool]:
    """Whether the value nests deeper than `max_depth`, and whether it is plain JSON.

    An explicit stack instead of recursion: no nesting can exhaust the recursion limit.
    """
    plain_json = True
    stack: list[tuple[object, int]] = [(parameters, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            plain_json = plain_json and all(isinstance(key, str) for key in value)
            children: Iterable[object] = value.values()
        elif isinstance(value, list):
            children = value
        else:
            plain_json = plain_json and isinstance(value, _JSON_SCALARS)
            continue
        if depth > max_depth:
            return True, plain_json
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
            elif not isinstance(child, _JSON_SCALARS):
                plain_json = False
    return False, plain_json


def _unstorable_parameters(node: Node) -> list[Problem]:
    """Every NUL or lone surrogate in parameter keys and strings, with its path, in order."""
    problems = []
    stack: list[tuple[object, tuple[PathSegment, ...]]] = [(node.parameters, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if match := _BAD_IN_TEXT.search(value):
                problems.append(_unstorable(node, _field_path(path), match.group()))
        elif isinstance(value, list):
            stack.extend((value[i], (*path, i)) for i in reversed(range(len(value))))
        elif isinstance(value, dict):
            for key in reversed(value):
                if isinstance(key, str) and (match := _BAD_IN_TEXT.search(key)):
                    where = _field_path((*path, key))
                    problems.append(_unstorable(node, where, match.group(), what="The key of "))
                stack.append((value[key], (*path, key)))
    return problems


def _credential_texts(node: Node) -> Iterator[tuple[str, str]]:
    for kind, credential_id in node.credentials.items():
        field = f"credentials.{_escape(kind)}"
        yield field, kind
        yield field, credential_id


def _unstorable(node: Node, field: str, character: str, what: str = "") -> Problem:
    return Problem(
        "INVALID_CHARACTER",
        f"{what}{field} contains the character {_codepoint(character)}, which cannot be stored",
        node.id,
        field,
    )


def _edge_problems(
    graph: Graph, nodes_by_id: Mapping[str, tuple[Node, NodeType | None]]
) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[str, str, str, str]] = set()
    successors: dict[str, list[str]] = {}
    single_inputs: dict[tuple[str, str], list[int]] = {}
    for index, edge in enumerate(graph.edges):
        where = f"edges[{index}]"
        source = nodes_by_id.get(edge.source)
        target = nodes_by_id.get(edge.target)
        if source is None:
            problems.append(
                Problem(
                    "EDGE_SOURCE_MISSING",
                    f"{_describe_edge(edge, nodes_by_id)}: there is no node with id "
                    f"{_quote(edge.source)}",
                    None,
                    f"{where}.source",
                )
            )
        elif source[1] is not None and source[1].output(edge.source_output) is None:
            problems.append(
                Problem(
                    "UNKNOWN_OUTPUT_PORT",
                    f"Node {_label(source[0])} has no output {_quote(edge.source_output)} "
                    f"({_port_list('outputs', source[1].outputs)})",
                    edge.source,
                    f"{where}.sourceOutput",
                )
            )
        target_port = None
        if target is None:
            problems.append(
                Problem(
                    "EDGE_TARGET_MISSING",
                    f"{_describe_edge(edge, nodes_by_id)}: there is no node with id "
                    f"{_quote(edge.target)}",
                    None,
                    f"{where}.target",
                )
            )
        elif target[1] is not None:
            target_port = target[1].input(edge.target_input)
            if target_port is None:
                problems.append(
                    Problem(
                        "UNKNOWN_INPUT_PORT",
                        f"Node {_label(target[0])} has no input {_quote(edge.target_input)} "
                        f"({_port_list('inputs', target[1].inputs)})",
                        edge.target,
                        f"{where}.targetInput",
                    )
                )
        key = (edge.source, edge.source_output, edge.target, edge.target_input)
        if key in seen:
            problems.append(
                Problem(
                    "DUPLICATE_EDGE",
                    f"{_describe_edge(edge, nodes_by_id)} appears more than once",
                    edge.source,
                    where,
                )
            )
            continue
        seen.add(key)
        if source is None or target is None:
            continue
        if edge.source == edge.target:
            problems.append(
                Problem(
                    "SELF_LOOP",
                    f"Node {_label(source[0])} is connected to itself",
                    edge.source,
                    where,
                )
            )
            continue
        successors.setdefault(edge.source, []).append(edge.target)
        if target_port is not None and not target_port.accepts_many:
            single_inputs.setdefault((edge.target, edge.target_input), []).append(index)
    for (target_id, port_name), indexes in single_inputs.items():
        if len(indexes) > 1:
            problems.append(
                Problem(
                    "TOO_MANY_INPUT_EDGES",
                    f"Input {_quote(port_name)} of node {_label(nodes_by_id[target_id][0])} "
                    f"takes one connection, but {len(indexes)} are connected",
                    target_id,
                    f"edges[{indexes[1]}].targetInput",
                )
            )
    for cycle in find_cycles(list(nodes_by_id), successors):
        names = [_label(nodes_by_id[node_id][0], quoted=False) for node_id in cycle]
        if len(names) > _MAX_CYCLE_NODES_SHOWN:
            hidden = len(names) - _MAX_CYCLE_NODES_SHOWN
            names = [*names[:_MAX_CYCLE_NODES_SHOWN], f"... ({hidden} more)"]
        problems.append(
            Problem(
                "CYCLE",
                f"Connections form a cycle: {' -> '.join(names)} -> {names[0]}",
                cycle[0],
            )
        )
    return problems


def find_cycles(
    node_ids: Sequence[str], successors: Mapping[str, Iterable[str]]
) -> list[list[str]]:
    """One cycle per strongly connected component that has one, as node ids in edge order.

    Each cycle starts at its component's node that comes first in `node_ids` and is a
    shortest cycle through that node; the first node is not repeated at the end. Self-loops
    are not reported (the caller reports them on their own). Iterative, so graph size is
    bounded by memory, not by the recursion limit.
    """
    position = {node_id: index for index, node_id in enumerate(node_ids)}
    cycles = []
    for component in _strongly_connected_components(node_ids, successors):
        if len(component) < 2:
            continue
        members = set(component)
        start = min(component, key=lambda node_id: position.get(node_id, len(position)))
        cycles.append(_shortest_cycle_through(start, members, successors))
    cycles.sort(key=lambda cycle: position.get(cycle[0], len(position)))
    return cycles


def _strongly_connected_components(
    node_ids: Sequence[str], successors: Mapping[str, Iterable[str]]
) -> list[list[str]]:
    """Tarjan's algorithm with an explicit work stack instead of recursion."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in node_ids:
        if root in index:
            continue
        index[root] = lowlink[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work: list[tuple[str, Iterator[str]]] = [(root, iter(successors.get(root, ())))]
        while work:
            node_id, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = lowlink[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(successors.get(child, ()))))
                    break
                if child in on_stack:
                    lowlink[node_id] = min(lowlink[node_id], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    lowlink[parent] = min(lowlink[parent], lowlink[node_id])
                if lowlink[node_id] == index[node_id]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node_id:
                            break
                    components.append(component)
    return components


def _shortest_cycle_through(
    start: str, members: set[str], successors: Mapping[str, Iterable[str]]
) -> list[str]:
    """Breadth-first search from `start` back to itself, inside one strongly connected set."""
    parents: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node_id = queue.popleft()
        for child in successors.get(node_id, ()):
            if child == node_id:
                continue
            if child == start:
                cycle = [node_id]
                while cycle[-1] != start:
                    cycle.append(parents[cycle[-1]])
                cycle.reverse()
                return cycle
            if child in members and child not in parents:
                parents[child] = node_id
                queue.append(child)
    raise AssertionError(f"{start!r} is on no cycle of its strongly connected component")


# ---------------------------------------------------------------------------------------------
# Parameters against the node type's JSON Schema


def _required_not_blank(
    validator: Any, required: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """`required`, where a blank string counts as missing; errors point at the property."""
    if not validator.is_type(instance, "object"):
        return
    for name in required:
        if name not in instance:
            yield ValidationError(f"{name!r} is a required property", path=(name,))
        elif isinstance(instance[name], str) and not instance[name].strip():
            yield ValidationError(f"{name!r} must not be blank", path=(name,))


_ParameterValidator = create(
    meta_schema=Draft202012Validator.META_SCHEMA,
    validators={**Draft202012Validator.VALIDATORS, "required": _required_not_blank},
    type_checker=Draft202012Validator.TYPE_CHECKER,
    format_checker=Draft202012Validator.FORMAT_CHECKER,
)

# When several keywords fail on one field, the user sees one problem: the most telling one.
_KEYWORD_RANK = {"required": 0, "enum": 1, "const": 1, "type": 2}


@dataclass(frozen=True, slots=True)
class _Finding:
    """A parameter problem before it is tied to a node, so that it can be memoised."""

    code: str
    message: str
    field: str
    rank: int


class _ParameterSchema:
    """One node type's schema, compiled once."""

    def __init__(self, node_type: NodeType) -> None:
        self.node_type = node_type
        self._validator = _ParameterValidator(_without_annotations(node_type.parameters_schema))

    def check(self, parameters: object) -> tuple[_Finding, ...]:
        """Every problem of these parameters, at most one per field."""
        findings = [
            finding
            for error in self._validator.iter_errors(parameters)
            for finding in _findings_from_error(error)
        ]
        best: dict[str, _Finding] = {}
        for finding in findings:
            kept = best.get(finding.field)
            if kept is None or finding.rank < kept.rank:
                best[finding.field] = finding
        return tuple(finding for finding in findings if best[finding.field] is finding)


# The editor re-validates the whole graph on every change, so most nodes arrive unchanged, and
# jsonschema costs tens of microseconds per node, which 2000 nodes turn into a pause. Results
# are memoised by the parameters' JSON text: up to this size, this many entries (16 MiB at
# worst, far less in practice), enough for the largest graph.
_MEMO_MAX_CHARS = 2048
_MEMO_ENTRIES = 8192


@functools.lru_cache(maxsize=_MEMO_ENTRIES)
def _check_json(schema: _ParameterSchema, encoded: str) -> tuple[_Finding, ...]:
    # Decoding the key itself guarantees that an entry matches the text it is filed under.
    return schema.check(json.loads(encoded))


# Keywords that only describe, for the editor. Dropping them changes no verdict and spares
# jsonschema a descent into the many schemas that hold nothing else, like an any-value field.
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"}
    | {"$comment"}
)
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "dependentSchemas")
_SCHEMA_LISTS = ("prefixItems", "allOf", "anyOf", "oneOf")
_SCHEMA_VALUES = frozenset(
    {"items", "contains", "additionalProperties", "unevaluatedProperties"}
    | {"unevaluatedItems", "propertyNames", "if", "then", "else", "not"}
)


def _without_annotations(schema: Any) -> Any:
    """The schema as the validator needs it; a subschema left empty becomes `true`."""
    if not isinstance(schema, Mapping):
        return schema
    stripped: dict[str, Any] = {}
    for keyword, value in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        if keyword in _SCHEMA_MAPS and isinstance(value, Mapping):
            value = {name: _without_annotations(sub) for name, sub in value.items()}
        elif keyword in _SCHEMA_LISTS and isinstance(value, list):
            value = [_without_annotations(sub) for sub in value]
        elif keyword in _SCHEMA_VALUES:
            value = _without_annotations(value)
        stripped[keyword] = value
    return stripped or True


# (name, version) -> compiled schema. The entry holds its node type, and is used only for that
# very descriptor: a registry with another descriptor under the same name and version (tests,
# reloaded plugins) replaces it.
_schemas: dict[tuple[str, int], _ParameterSchema] = {}


def _schema_for(node_type: NodeType) -> _ParameterSchema:
    key = (node_type.name, node_type.version)
    compiled = _schemas.get(key)
    if compiled is None or compiled.node_type is not node_type:
        compiled = _schemas[key] = _ParameterSchema(node_type)
    return compiled


def _parameter_problems(node: Node, node_type: NodeType, encoded: str | None) -> list[Problem]:
    """Problems of a node's parameters against its type's schema (severity PARAMETER).

    `encoded` is the parameters as JSON text when they are plain JSON, which allows the memo.
    """
    compiled = _schema_for(node_type)
    if encoded is not None and len(encoded) <= _MEMO_MAX_CHARS:
        findings = _check_json(compiled, encoded)
    else:
        findings = compiled.check(node.parameters)
    return [
        Problem(finding.code, finding.message, node.id, finding.field, Severity.PARAMETER)
        for finding in findings
    ]


def _findings_from_error(error: ValidationError) -> Iterator[_Finding]:
    path = tuple(error.absolute_path)
    field = _field_path(path)
    keyword = str(error.validator)
    rank = _KEYWORD_RANK.get(keyword, 3)
    if keyword == "required":
        name = field.removeprefix("parameters").removeprefix(".")
        blank = isinstance(error.instance, Mapping) and bool(path) and path[-1] in error.instance
        verb = "must not be empty" if blank else "is required"
        yield _Finding("MISSING_PARAMETER", f"Parameter {_quote(name)} {verb}", field, rank)
        return
    if keyword == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, Mapping) else {}
        known = schema.get("properties", {})
        patterns = schema.get("patternProperties", {})
        for key in error.instance:
            if key not in known and not any(re.search(pattern, key) for pattern in patterns):
                where = _field_path((*path, key))
                message = f"{where}: unknown parameter {_quote(key)}"
                yield _Finding("INVALID_PARAMETER", message, where, rank)
        return
    if keyword in ("anyOf", "oneOf") and error.context:
        # Name the alternative that came closest instead of "not valid under any"; best_match
        # walks into the alternatives and stays on `error` when none stands out.
        closest = best_match([error])
        if closest is not error:
            yield from _findings_from_error(closest)
            return
    yield _Finding("INVALID_PARAMETER", f"{field}: {_explain(error)}", field, rank)


_TYPE_WORDS = {
    "string": "text",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}


def _explain(error: ValidationError) -> str:
    """The error in words for the person filling in the form."""
    keyword = str(error.validator)
    expected: Any = error.validator_value
    value = error.instance
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    custom = schema.get("errorMessage")
    if isinstance(custom, Mapping):
        custom = custom.get(keyword)
    if isinstance(custom, str):
        return custom
    if keyword == "type":
        kinds = [expected] if isinstance(expected, str) else list(expected)
        wanted = " or ".join(_TYPE_WORDS.get(kind, kind) for kind in kinds)
        return f"expected {wanted}, got {_show(value)}"
    if keyword == "enum":
        options = ", ".join(_show(option) for option in list(expected)[:_MAX_OPTIONS_SHOWN])
        more = ", ..." if len(expected) > _MAX_OPTIONS_SHOWN else ""
        return f"{_show(value)} is not one of {options}{more}"
    if keyword == "const":
        return f"must be {_show(expected)}"
    if keyword == "minimum":
        return f"{_show(value)} is less than the minimum of {_show(expected)}"
    if keyword == "maximum":
        return f"{_show(value)} is more than the maximum of {_show(expected)}"
    if keyword == "exclusiveMinimum":
        return f"{_show(value)} must be more than {_show(expected)}"
    if keyword == "exclusiveMaximum":
        return f"{_show(value)} must be less than {_show(expected)}"
    if keyword == "minLength":
        return f"must be at least {expected} characters long"
    if keyword == "maxLength":
        return f"must be at most {expected} characters long"
    if keyword == "minItems":
        return f"must have at least {expected} {'entry' if expected == 1 else 'entries'}"
    if keyword == "maxItems":
        return f"must have at most {expected} {'entry' if expected == 1 else 'entries'}"
    if keyword == "pattern":
        return f"{_show(value)} does not match the pattern {_show(expected)}"
    if keyword == "uniqueItems":
        return "entries must all be different"
    if keyword in ("anyOf", "oneOf"):
        if error.context:
            return f"{_show(value)} does not match any of the allowed forms"
        return f"{_show(value)} matches more than one of the allowed forms"
    if keyword == "not":
        return f"{_show(value)} is not allowed here"
    # Keywords without a dedicated wording: jsonschema's own message, bounded in length.
    return _clip(_escape(error.message), _MAX_MESSAGE_CHARS)


# ---------------------------------------------------------------------------------------------
# Wording helpers


def _field_path(path: Iterable[PathSegment]) -> str:
    """("fields", 0, "name") -> "parameters.fields[0].name", in jsonschema's json_path style."""
    text = "parameters"
    for segment in path:
        if isinstance(segment, int):
            text += f"[{segment}]"
        elif _IDENTIFIER.fullmatch(segment):
            text += f".{segment}"
        else:
            text += "['" + _escape(segment.replace("\\", "\\\\").replace("'", "\\'")) + "']"
    return text


def _describe_edge(edge: Edge, nodes_by_id: Mapping[str, tuple[Node, NodeType | None]]) -> str:
    def end(node_id: str, port: str) -> str:
        known = nodes_by_id.get(node_id)
        label = _label(known[0]) if known else _quote(node_id)
        return label if port == "main" else f"{label} ({_quote(port)})"

    return (
        f"Connection from {end(edge.source, edge.source_output)} "
        f"to {end(edge.target, edge.target_input)}"
    )


def _label(node: Node, *, quoted: bool = True) -> str:
    """How messages name a node: by its name, or by its id when the name is blank."""
    text = node.name if node.name.strip() else node.id
    return _quote(text) if quoted else _clip(_escape(text[: _MAX_SHOWN_CHARS + 1]))


def _port_list(kind: str, ports: Sequence[Any]) -> str:
    if not ports:
        return f"it has no {kind}"
    return f"{kind}: {', '.join(port.name for port in ports)}"


def _quote(text: str) -> str:
    # Cut before escaping: a quoted value may be a 256 KiB parameter.
    return f"'{_clip(_escape(text[: _MAX_SHOWN_CHARS + 1]))}'"


def _show(value: object) -> str:
    """A value as a message shows it: strings quoted, everything else as JSON, all bounded."""
    if isinstance(value, str):
        return _quote(value)
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return _clip(_escape(text[: _MAX_SHOWN_CHARS + 1]))


def _escape(text: str) -> str:
    """Control characters and lone surrogates as \\uXXXX, so messages always encode cleanly."""
    return _BAD_IN_LABEL.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def _clip(text: str, limit: int = _MAX_SHOWN_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _codepoint(character: str) -> str:
    return f"U+{ord(character):04X}"


def _is_finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
