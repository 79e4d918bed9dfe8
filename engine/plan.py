"""A workflow version compiled for running: node types resolved, expressions compiled, edges
indexed. Versions never change, so plans are cached by version id with no invalidation."""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from engine import slices
from engine.errors import WorkflowError
from engine.expressions import CompiledParameters, compile_parameters
from engine.graph import DEFAULT_PORT, ERROR_PORT, Edge, Graph, Node, OnError
from engine.node_types import NodeType, NodeTypeLookup
from engine.validation import GraphLimits, Problem, validating


class PlanError(WorkflowError):
    """The version cannot run; `problems` says every reason, with node and field."""

    def __init__(self, problems: list[Problem]) -> None:
        first = problems[0].message if problems else "invalid workflow"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(first + more)
        self.problems = problems


@dataclass(frozen=True, slots=True)
class PlanNode:
    """One node, ready to run."""

    node: Node
    node_type: NodeType
    compiled: CompiledParameters
    order: int
    # Incoming edge indexes per input port, in edge order (the order items are concatenated).
    incoming: dict[str, tuple[int, ...]]
    outgoing: tuple[int, ...]
    # The type's output ports, plus `error` when the node routes its errors there.
    output_ports: tuple[str, ...]
    # The node's id, as a field: the executor reads it several times per node.
    id: str


@dataclass(frozen=True, slots=True)
class Plan:
    """A compiled workflow version."""

    version_id: str
    nodes: dict[str, PlanNode]
    edges: tuple[Edge, ...]
    topological: tuple[str, ...]
    by_name: dict[str, str]
    # Upstream node names by node id, computed on first request (see `ancestor_names`).
    _ancestors: dict[str, frozenset[str]] = field(default_factory=dict, compare=False, repr=False)

    def ancestor_names(self, node_id: str) -> frozenset[str]:
        """Names of the nodes upstream of a node. Computed when a node asks (the Code node
        does, to refuse `$("X")` of a node that is not upstream) and remembered: a plan
        never changes, and computing it for every node of a long chain would be quadratic."""
        known = self._ancestors.get(node_id)
        if known is not None:
            return known
        names = frozenset(self.nodes[upstream].node.name for upstream in self.ancestor_ids(node_id))
        self._ancestors[node_id] = names
        return names

    def ancestor_ids(self, node_id: str) -> set[str]:
        """Ids of the nodes upstream of a node."""
        seen: set[str] = set()
        stack = [node_id]
        while stack:
            for edge_indexes in self.nodes[stack.pop()].incoming.values():
                for index in edge_indexes:
                    source = self.edges[index].source
                    if source not in seen:
                        seen.add(source)
                        stack.append(source)
        seen.discard(node_id)
        return seen

    def triggers(self) -> list[PlanNode]:
        return [n for n in self.nodes.values() if n.node_type.is_trigger]

    def entry_nodes(self) -> list[PlanNode]:
        """Nodes without incoming edges: where a run may start."""
        return [n for n in self.nodes.values() if not n.incoming]


def _topological(graph: Graph) -> tuple[str, ...]:
    """Kahn's algorithm, ties broken by node order, so the order is deterministic."""
    position = {node.id: index for index, node in enumerate(graph.nodes)}
    indegree = dict.fromkeys(position, 0)
    successors: dict[str, list[str]] = {node_id: [] for node_id in position}
    for edge in graph.edges:
        indegree[edge.target] += 1
        successors[edge.source].append(edge.target)
    ready = [(position[node_id], node_id) for node_id, degree in indegree.items() if degree == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, node_id = heapq.heappop(ready)
        order.append(node_id)
        for successor in successors[node_id]:
            indegree[successor] -= 1
            if indegree[successor] == 0:
                heapq.heappush(ready, (position[successor], successor))
    return tuple(order)


# Problems of a graph's connections (`engine/validation/edges.py`): on an edge's field, or
# a cycle (on one of its nodes).
_EDGES_FIELD = "edges["
_GRAPH_LIMITS = ("TOO_MANY_NODES", "TOO_MANY_EDGES")


def _stops_node_alone(problem: Problem, node_id: str) -> bool:
    """Whether `problem` stops node `node_id` from running alone (see `planning`)."""
    if problem.node_id is None:
        return problem.code in _GRAPH_LIMITS
    on_edge = problem.code == "CYCLE" or (problem.field or "").startswith(_EDGES_FIELD)
    return problem.node_id == node_id and not on_edge


def compile_plan(
    version_id: str,
    graph: Graph,
    registry: NodeTypeLookup,
    limits: GraphLimits | None = None,
    only: str | None = None,
) -> Plan:
    """Validate and compile a graph; raises `PlanError` listing every problem (with `only`,
    see `planning`)."""
    return slices.finish(planning(version_id, graph, registry, limits, only))


async def prepare_plan(
    version_id: str,
    graph: Graph,
    registry: NodeTypeLookup,
    limits: GraphLimits | None = None,
    only: str | None = None,
) -> Plan:
    """`compile_plan` on the event loop, a slice at a time: a graph's expressions may take
    seconds to compile when they are not in the compile cache. With `only`, a node id: the
    plan of that node alone (see `planning`)."""
    return await slices.finish_in_slices(planning(version_id, graph, registry, limits, only))


def planning(
    version_id: str,
    graph: Graph,
    registry: NodeTypeLookup,
    limits: GraphLimits | None = None,
    only: str | None = None,
) -> slices.Work[Plan]:
    """`compile_plan` as work that pauses between nodes and between expressions.

    With `only` (a node run on its own, `executeNode`), the graph is checked whole (the
    node's expressions may name the nodes upstream of it) but only that node's own problems
    stop it, and the graph's size limits: the plan holds that node alone, without edges, so
    the problems of edges (even into it: its items are given) and of other nodes do not."""
    report = yield from validating(graph, registry, limits or GraphLimits())
    problems = report.blocking_problems()
    if only is not None:
        problems = [problem for problem in problems if _stops_node_alone(problem, only)]
        graph = Graph(nodes=tuple(node for node in graph.nodes if node.id == only))
    if problems:
        raise PlanError(problems)
    incoming: dict[str, dict[str, list[int]]] = {node.id: {} for node in graph.nodes}
    outgoing: dict[str, list[int]] = {node.id: [] for node in graph.nodes}
    for index, edge in enumerate(graph.edges):
        incoming[edge.target].setdefault(edge.target_input, []).append(index)
        outgoing[edge.source].append(index)
    nodes: dict[str, PlanNode] = {}
    for order, node in enumerate(graph.nodes):
        node_type = registry.get(node.type, node.type_version)
        assert node_type is not None  # validated above
        ports = tuple(port.name for port in node_type.outputs)
        if node.on_error is OnError.ERROR_OUTPUT and ERROR_PORT not in ports:
            ports += (ERROR_PORT,)
        # Validation compiled every expression already; this comes from the compile cache.
        compiled, _ = compile_parameters(node_type.template_parameters(node.parameters))
        nodes[node.id] = PlanNode(
            node=node,
            node_type=node_type,
            compiled=compiled,
            order=order,
            incoming={port: tuple(edges) for port, edges in incoming[node.id].items()},
            outgoing=tuple(outgoing[node.id]),
            output_ports=ports,
            id=node.id,
        )
        yield
    return Plan(
        version_id=version_id,
        nodes=nodes,
        edges=graph.edges,
        topological=_topological(graph),
        by_name={node.name: node.id for node in graph.nodes},
    )


class PlanCache:
    """A bounded LRU of plans keyed by the immutable version id."""

    def __init__(self, max_entries: int = 256) -> None:
        self._max_entries = max_entries
        self._plans: OrderedDict[str, Plan] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, version_id: str, build: Callable[[], Plan]) -> Plan:
        plan = self._cached(version_id)
        if plan is None:
            plan = build()
            self._keep(version_id, plan)
        return plan

    async def prepare(self, version_id: str, build: Callable[[], Awaitable[Plan]]) -> Plan:
        """`get`, building the plan with `await build()` (`prepare_plan`)."""
        plan = self._cached(version_id)
        if plan is None:
            plan = await build()
            self._keep(version_id, plan)
        return plan

    def _cached(self, version_id: str) -> Plan | None:
        plan = self._plans.get(version_id)
        if plan is None:
            self.misses += 1
            return None
        self.hits += 1
        self._plans.move_to_end(version_id)
        return plan

    def _keep(self, version_id: str, plan: Plan) -> None:
        self._plans[version_id] = plan
        while len(self._plans) > self._max_entries:
            self._plans.popitem(last=False)

    def clear(self) -> None:
        self._plans.clear()


__all__ = [
    "DEFAULT_PORT",
    "ERROR_PORT",
    "Plan",
    "PlanCache",
    "PlanError",
    "PlanNode",
    "compile_plan",
    "planning",
    "prepare_plan",
]
