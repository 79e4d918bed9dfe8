"""Single-step edits of a graph, as the canvas makes them. Pure: each returns a new graph.

An edit that cannot apply (no such node, no such edge) raises `EditError`; the result of a
successful edit is validated as a whole by the caller, like any other graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from engine.errors import WorkflowError
from engine.expressions import rename_references
from engine.graph import Edge, Graph, Node
from engine.node_types import NodeTypeLookup, ParameterMigrationError


class EditError(WorkflowError):
    """An edit refers to something the graph does not have."""

    def __init__(self, code: str, message: str, node_id: str | None, field: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.node_id = node_id
        self.field = field


def add_node(graph: Graph, node: Node) -> Graph:
    """Append a node; a duplicate id or name is reported by validation."""
    return replace(graph, nodes=(*graph.nodes, node))


def update_node(graph: Graph, node_id: str, node: Node) -> Graph:
    """Replace the node `node_id` by `node`, in place. Its id cannot change."""
    if graph.node(node_id) is None:
        raise EditError("NODE_NOT_FOUND", f"no node with id {node_id!r}", node_id, "nodeId")
    if node.id != node_id:
        raise EditError(
            "NODE_ID_CHANGED",
            f"node id cannot change (from {node_id!r} to {node.id!r}); "
            "remove the node and add a new one instead",
            node_id,
            "node.id",
        )
    updated = replace(graph, nodes=tuple(node if n.id == node_id else n for n in graph.nodes))
    return carry_renames(graph, updated)


def carry_renames(before: Graph, after: Graph) -> Graph:
    """`after`, with expressions that referred to a renamed node (same id, new name) pointing
    at its new name, so that renaming never breaks `$node["Name"]` or `$("Name")`."""
    old_names = {node.id: node.name for node in before.nodes}
    renames = [
        (old_names[node.id], node.name)
        for node in after.nodes
        if node.id in old_names and old_names[node.id] != node.name
    ]
    if not renames:
        return after
    nodes = []
    for node in after.nodes:
        parameters = node.parameters
        for old, new in renames:
            parameters = rename_references(parameters, old, new)
        nodes.append(
            node if parameters == node.parameters else replace(node, parameters=parameters)
        )
    return replace(after, nodes=tuple(nodes))


def remove_node(graph: Graph, node_id: str) -> Graph:
    """Remove a node and every edge that touches it."""
    if graph.node(node_id) is None:
        raise EditError("NODE_NOT_FOUND", f"no node with id {node_id!r}", node_id, "nodeId")
    return Graph(
        nodes=tuple(n for n in graph.nodes if n.id != node_id),
        edges=tuple(e for e in graph.edges if node_id not in (e.source, e.target)),
    )


def add_edge(graph: Graph, edge: Edge) -> Graph:
    """Append an edge; dangling ends and duplicates are reported by validation."""
    return replace(graph, edges=(*graph.edges, edge))


def remove_edge(graph: Graph, edge: Edge) -> Graph:
    """Remove the edge equal to `edge` (same nodes and ports)."""
    if edge not in graph.edges:
        raise EditError(
            "EDGE_NOT_FOUND",
            f"no edge {edge.source}:{edge.source_output} -> {edge.target}:{edge.target_input}",
            edge.source,
            "edge",
        )
    return replace(graph, edges=tuple(e for e in graph.edges if e != edge))


def pin_type_versions(
    graph: Graph, latest: Callable[[str], int | None], previous: Graph | None = None
) -> Graph:
    """Every node with its type's version written down, so that a newer version of the type
    never changes how it runs: a node that gives none keeps the version it had in `previous`
    (the graph it replaces: an editor may send nodes back without it), else takes its type's
    latest (`latest(name)`; None for an unknown type, whose node is left as it is and
    reported by validation)."""
    kept: dict[tuple[str, str], int] = {}
    if previous is not None:
        for node in previous.nodes:
            if node.type_version is not None:
                kept[(node.id, node.type)] = node.type_version
    pinned = []
    changed = False
    for node in graph.nodes:
        if node.type_version is None:
            version = kept.get((node.id, node.type))
            if version is None:
                version = latest(node.type)
            if version is not None:
                node = replace(node, type_version=version)
                changed = True
        pinned.append(node)
    return replace(graph, nodes=tuple(pinned)) if changed else graph


def upgrade_node(graph: Graph, node_id: str, to_version: int, registry: NodeTypeLookup) -> Graph:
    """The node `node_id` moved to version `to_version` of its type, its parameters carried
    over by each version's `migrate` in turn. Refused with an `EditError` when the node or
    the version does not exist, the version is not newer, or a version on the way has no
    migration; a migration's own problems come as `ParameterMigrationError`."""
    node = graph.node(node_id)
    if node is None:
        raise EditError("NODE_NOT_FOUND", f"no node with id {node_id!r}", node_id, "nodeId")
    versions = registry.versions(node.type)
    if to_version not in versions:
        raise EditError(
            "UNKNOWN_TYPE_VERSION",
            f"node type {node.type!r} has no version {to_version} (installed: "
            f"{', '.join(map(str, versions)) or 'none'})",
            node_id,
            "toVersion",
        )
    current = node.type_version if node.type_version is not None else max(versions)
    if to_version <= current:
        raise EditError(
            "NOT_NEWER",
            f"the node is on version {current} of {node.type!r}; an upgrade goes to a newer "
            f"version, not {to_version}",
            node_id,
            "toVersion",
        )
    parameters = node.parameters
    # Through each installed version on the way (a version never installed is skipped: the
    # next one's migration starts from the last one installed).
    for version in (v for v in versions if current < v <= to_version):
        step = registry.get(node.type, version)
        if step is None or step.migrate is None:
            raise EditError(
                "NO_MIGRATION",
                f"node type {node.type!r} gives no way to carry parameters over to version "
                f"{version}",
                node_id,
                "toVersion",
            )
        try:
            parameters = step.migrate(parameters)
        except ParameterMigrationError as exc:
            problems = exc.problems or [("", f"version {version}'s migration refused them")]
            raise ParameterMigrationError(problems, node_id=node_id) from exc
        except Exception as exc:  # a plugin's migration that broke: the user is told so
            problem = f"version {version}'s migration failed: {type(exc).__name__}: {exc}"
            raise ParameterMigrationError([("", problem[:500])], node_id=node_id) from exc
    return update_node(
        graph, node_id, replace(node, type_version=to_version, parameters=parameters)
    )
