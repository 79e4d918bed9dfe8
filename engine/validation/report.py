"""What validation reports: problems, their severity, and the limits a graph is held to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from engine.json_depth import MAX_JSON_DEPTH


class Severity(StrEnum):
    """Whether a problem blocks saving (STRUCTURAL), only running and publishing
    (PARAMETER), or nothing: advice shown with the node (HINT, a deprecated type version)."""

    STRUCTURAL = "STRUCTURAL"
    PARAMETER = "PARAMETER"
    HINT = "HINT"


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
    # Nesting of objects and lists in one node's parameters: the JSON nesting limit, which
    # keeps JSON encoding and schema checks far from Python's recursion limit.
    max_parameters_depth: int = MAX_JSON_DEPTH
    max_retry_attempts: int = 10
    max_timeout_s: float = 86400.0
    # Size of all the items pinned on one draft (engine/pins.py), JSON-encoded as UTF-8.
    max_pinned_bytes: int = 4 * 1024 * 1024


DEFAULT_LIMITS = GraphLimits()


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """Everything wrong with one graph."""

    structural: tuple[Problem, ...]
    # Node id -> problems with that node's parameters (severity PARAMETER), and hints.
    parameters: dict[str, tuple[Problem, ...]]

    @property
    def ok(self) -> bool:
        """True when the graph may be saved: no structural problem."""
        return not self.structural

    @property
    def runnable(self) -> bool:
        """True when the graph may be run or published: no problem but hints."""
        return not self.blocking_problems()

    def all_problems(self) -> list[Problem]:
        """Structural problems first, then the nodes' problems (hints too) in node order."""
        problems = list(self.structural)
        for node_problems in self.parameters.values():
            problems.extend(node_problems)
        return problems

    def blocking_problems(self) -> list[Problem]:
        """What keeps the graph from running or being published: all but hints."""
        return [p for p in self.all_problems() if p.severity is not Severity.HINT]
