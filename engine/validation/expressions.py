"""Expression checks: every `{{ }}` compiles, and `$node["X"]` names an ancestor of the node.

Both are parameter problems: a draft may hold a half-typed expression, but it cannot run or be
published until the expression is fixed. Code parameters (the Code node's script) hold no
`{{ }}`; the nodes their source names literally must be ancestors all the same.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from engine.code.references import script_references
from engine.expressions import ExpressionError, compile_template, referenced_nodes
from engine.expressions.template import expression_texts
from engine.graph import Graph, Node
from engine.node_types import NodeType
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


def expression_problems(
    graph: Graph, node_types: Mapping[str, NodeType | None]
) -> Iterator[Problem | None]:
    """Problems of the expressions (and code) of every node; `node_types` by node id. None
    comes between two expressions compiled: where the caller may pause."""
    ancestry = _Ancestry(graph)
    ids_by_name = {node.name: node.id for node in graph.nodes}
    for node in graph.nodes:
        node_type = node_types.get(node.id)
        templates = node.parameters
        if node_type is not None:
            templates = node_type.template_parameters(node.parameters)
        yield from _syntax_problems(node, templates)
        named = [(referenced_nodes(templates), "an expression", "parameters")]
        for name in node_type.code_parameters if node_type is not None else ():
            code = node.parameters.get(name)
            if isinstance(code, str):
                named.append((script_references(code), "the code", f"parameters.{name}"))
        for names, what, field in named:
            if names:
                yield from _reference_problems(
                    node, names, what, field, ancestry.of(node.id), ids_by_name
                )


def _reference_problems(
    node: Node,
    names: set[str],
    what: str,
    field: str,
    ancestors: set[str],
    ids_by_name: dict[str, str],
) -> Iterator[Problem]:
    for name in sorted(names):
        referenced = ids_by_name.get(name)
        if referenced is None:
            message = f"{what} refers to node {quote(name)}, which does not exist"
        elif referenced not in ancestors:
            message = (
                f"{what} refers to node {quote(name)}, which does not run before "
                f"this node (only nodes upstream of {quote(node.name)} can be referenced)"
            )
        else:
            continue
        yield Problem("INVALID_NODE_REFERENCE", message, node.id, field, Severity.PARAMETER)


def _syntax_problems(node: Node, templates: Any) -> Iterator[Problem | None]:
    for path, text in expression_texts(templates):
        try:
            compile_template(text)
        except ExpressionError as error:
            yield Problem(
                "EXPRESSION_SYNTAX",
                f"Parameter '{path}': {error}",
                node.id,
                f"parameters.{path}" if path else "parameters",
                Severity.PARAMETER,
            )
        yield None
