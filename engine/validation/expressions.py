"""Expression checks: every `{{ }}` compiles, and `$node["X"]` names an ancestor of the node.

Both are parameter problems: a draft may hold a half-typed expression, but it cannot run or be
published until the expression is fixed.
"""

from __future__ import annotations

from collections.abc import Iterator

from engine.expressions import compile_parameters, referenced_nodes
from engine.graph import Graph, Node
from engine.validation.report import Problem, Severity
from engine.validation.text import quote


class _Ancestry:
    """Ancestors of nodes, computed on demand and remembered."""

    def __init__(self, graph: Graph) -> None:
        self._parents: dict[str, list[str]] = {}
        for edge in graph.edges:
            self._parents.setdefault(edge.target, []).append(edge.source)
        self._known: dict[str, set[str]] = {}

    def of(self, node_id: str) -> set[str]:
        known = self._known.get(node_id)
        if known is not None:
            return known
        seen: set[str] = set()
        stack = list(self._parents.get(node_id, ()))
        while stack:
            parent = stack.pop()
            if parent in seen:
                continue
            seen.add(parent)
            stack.extend(self._parents.get(parent, ()))
        seen.discard(node_id)
        self._known[node_id] = seen
        return seen


def expression_problems(graph: Graph) -> Iterator[Problem]:
    ancestry = _Ancestry(graph)
    ids_by_name = {node.name: node.id for node in graph.nodes}
    for node in graph.nodes:
        yield from _syntax_problems(node)
        names = referenced_nodes(node.parameters)
        if not names:
            continue
        ancestors = ancestry.of(node.id)
        for name in sorted(names):
            referenced = ids_by_name.get(name)
            if referenced is None:
                message = f"an expression refers to node {quote(name)}, which does not exist"
            elif referenced not in ancestors:
                message = (
                    f"an expression refers to node {quote(name)}, which does not run before "
                    f"this node (only nodes upstream of {quote(node.name)} can be referenced)"
                )
            else:
                continue
            yield Problem(
                "INVALID_NODE_REFERENCE",
                message,
                node.id,
                "parameters",
                Severity.PARAMETER,
            )


def _syntax_problems(node: Node) -> Iterator[Problem]:
    _, errors = compile_parameters(node.parameters)
    for error in errors:
        yield Problem(
            "EXPRESSION_SYNTAX",
            f"Parameter '{error.path}': {error.error}",
            node.id,
            f"parameters.{error.path}" if error.path else "parameters",
            Severity.PARAMETER,
        )
