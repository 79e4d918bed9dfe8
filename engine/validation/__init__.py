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

Compiling a graph's expressions can take seconds (a workflow may hold hundreds of
expressions of 10,000 characters), so the checks are written as `validating`, work that
pauses between nodes and between expressions: `validate_graph` runs it straight through,
`check_graph` (the API's) gives the event loop a turn whenever a slice has passed
(`engine.slices`).

The modules, in the order `validating` uses them:

    report       Problem, Severity, GraphLimits, ValidationReport
    structure    graph size; each node's id, name, type, retry and timeout
    scan         text the database cannot store; parameter depth and size
    edges        connections (cycles through `cycles`)
    parameters   parameters against the schema (`schemas`), worded by `findings`
    expressions  `{{ }}` that do not compile, `$node["X"]` (in expressions or in code)
                 that is not an ancestor
    text         how messages quote what the user wrote
"""

from __future__ import annotations

import unicodedata

from engine import slices
from engine.graph import Graph, Node
from engine.node_types import NodeType, NodeTypeLookup
from engine.validation.cycles import find_cycles
from engine.validation.edges import edge_problems
from engine.validation.expressions import expression_problems
from engine.validation.parameters import checked_problems, parameter_problems
from engine.validation.report import (
    DEFAULT_LIMITS,
    GraphLimits,
    Problem,
    Severity,
    ValidationReport,
)
from engine.validation.scan import scan_parameters
from engine.validation.structure import node_problems, size_problems
from engine.validation.text import quote

__all__ = [
    "DEFAULT_LIMITS",
    "GraphLimits",
    "Problem",
    "Severity",
    "ValidationReport",
    "check_graph",
    "find_cycles",
    "validate_graph",
    "validating",
]


def validate_graph(
    graph: Graph, registry: NodeTypeLookup, limits: GraphLimits = DEFAULT_LIMITS
) -> ValidationReport:
    """Check a graph against the registry and the limits, reporting every problem found."""
    return slices.finish(validating(graph, registry, limits))


async def check_graph(
    graph: Graph, registry: NodeTypeLookup, limits: GraphLimits = DEFAULT_LIMITS
) -> ValidationReport:
    """`validate_graph` on the event loop, a slice at a time."""
    return await slices.finish_in_slices(validating(graph, registry, limits))


def validating(
    graph: Graph, registry: NodeTypeLookup, limits: GraphLimits = DEFAULT_LIMITS
) -> slices.Work[ValidationReport]:
    """The checks of `validate_graph`, pausing between nodes and between expressions.

    A graph with more nodes or edges than the limits allow is refused with only that problem:
    checking it further would spend the time the limits exist to bound.
    """
    oversized = size_problems(graph, limits)
    if oversized:
        return ValidationReport(structural=tuple(oversized), parameters={})
    structural: list[Problem] = []
    parameters: dict[str, list[Problem]] = {}
    nodes_by_id: dict[str, tuple[Node, NodeType | None]] = {}
    nodes_by_name: dict[str, Node] = {}
    for index, node in enumerate(graph.nodes):
        node_type = registry.get(node.type, node.type_version)
        structural.extend(node_problems(index, node, node_type, registry, limits))
        # A blank id is reported as EMPTY_ID; edges cannot refer to it.
        has_id = bool(node.id.strip())
        if has_id and node.id in nodes_by_id:
            structural.append(
                Problem(
                    "DUPLICATE_NODE_ID",
                    f"Node id {quote(node.id)} is used by more than one node",
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
                        f"Node name {quote(node.name)} is already used by another node; "
                        "expressions refer to nodes by name, so names must be unique",
                        node.id,
                        "name",
                    )
                )
        scan = scan_parameters(node, limits)
        structural.extend(scan.problems)
        if node_type is not None and scan.checkable:
            found = parameter_problems(node, node_type, scan.encoded)
            for problem in checked_problems(node, node_type, list(found)):
                if problem is None:
                    yield
                else:
                    found.append(problem)
            if found:
                parameters.setdefault(node.id, []).extend(found)
        if node_type is not None and node_type.deprecated:
            newest = registry.latest_version(node.type)
            parameters.setdefault(node.id, []).append(deprecated(node, node_type, newest))
        yield
    structural.extend(edge_problems(graph, nodes_by_id))
    if not structural:
        node_types = {node_id: node_type for node_id, (_, node_type) in nodes_by_id.items()}
        for problem in expression_problems(graph, node_types):
            if problem is None:  # between two expressions
                yield
                continue
            assert problem.node_id is not None
            found = parameters.setdefault(problem.node_id, [])
            # One problem per field: a schema problem on it already says enough.
            if all(existing.field != problem.field for existing in found):
                found.append(problem)
    return ValidationReport(
        structural=tuple(structural),
        parameters={node_id: tuple(found) for node_id, found in parameters.items()},
    )


def deprecated(node: Node, node_type: NodeType, newest_version: int | None) -> Problem:
    """The hint a node of a deprecated type version gets: it still runs."""
    newest = ""
    if newest_version is not None and newest_version > node_type.version:
        newest = f"; version {newest_version} is the newest (upgradeNode moves it there)"
    return Problem(
        "NODE_TYPE_DEPRECATED",
        f"Version {node_type.version} of {quote(node.type)} is deprecated: "
        f"{node_type.deprecated}{newest} (the node still runs)",
        node.id,
        "typeVersion",
        severity=Severity.HINT,
    )
