"""Cycles in a directed graph, found without recursion so graph size is bounded by memory."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence


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
