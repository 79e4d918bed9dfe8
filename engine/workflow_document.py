"""A workflow as one portable JSON document: what `exportWorkflow` writes and
`importWorkflow` reads (pure, no I/O).

Format version 1 has these members, written in this order:

    formatVersion  1
    name           the workflow's name
    description    free text
    tags           list of text
    settings       the workflow's settings
    nodes          each as the graph stores it (`Node.to_json`: id, name, type, typeVersion,
                   parameters, position, disabled, notes, retry, timeoutSeconds, onError),
                   except `credentials`: `{kind: {"name": credential name}}`. A credential is
                   named, never given by id (ids mean nothing in another workspace) and
                   never with its fields (secrets stay where they are).
    edges          each as the graph stores it (`Edge.to_json`)
    pinData        node id -> the items pinned as that node's output (engine/pins.py), in
                   the order of the nodes; `{}` when nothing is pinned. An import checks
                   them as `pinNodeData` does: each a list of JSON objects, of a node of
                   the document, all together within the size limit.

The workflow's id is not in the document and node ids are the graph's own, so exporting
a workflow, importing the document and exporting the new workflow gives the same document.

Reading collects every problem at once, each with its path (`nodes[3].type`, or a node and a
field inside it, as validation names them). A document of a newer format version is refused
with that one problem (UNSUPPORTED_FORMAT_VERSION): what its members mean is not known here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.graph import Graph
from engine.pins import item_problems
from engine.validation import Problem
from engine.validation.text import escape, quote, show
from engine.workflow_reader import WorkflowReader

FORMAT_VERSION = 1
DOCUMENT_KEYS = frozenset(
    {"formatVersion", "name", "description", "tags", "settings", "nodes", "edges", "pinData"}
)


def export_document(
    *,
    name: str,
    description: str,
    tags: list[str],
    settings: Mapping[str, Any],
    graph: Graph,
    credential_names: Mapping[str, str],
    pinned: Mapping[str, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The document of a workflow; `credential_names` gives the name of each credential id
    the nodes refer to (a reference to a credential not in it is left out)."""
    nodes = []
    for node in graph.nodes:
        data = node.to_json()
        data["credentials"] = {
            kind: {"name": credential_names[credential_id]}
            for kind, credential_id in sorted(node.credentials.items())
            if credential_id in credential_names
        }
        nodes.append(data)
    return {
        "formatVersion": FORMAT_VERSION,
        "name": name,
        "description": description,
        "tags": list(tags),
        "settings": dict(settings),
        "nodes": nodes,
        "edges": graph.edges_to_json(),
        "pinData": {node.id: pinned[node.id] for node in graph.nodes if node.id in pinned}
        if pinned
        else {},
    }


@dataclass(slots=True)
class DocumentRead:
    """A document read into plain values, with every problem found in its shape."""

    name: str = ""
    description: str = ""
    tags: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    # The pinned items by node id (those that are valid).
    pinned: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Each node's `credentials` hold credential *names* by kind, not ids, until the importer
    # links them to credentials of its workspace (validation checks them as text all the
    # same: what the database cannot store is refused).
    graph: Graph = field(default_factory=Graph)
    problems: list[Problem] = field(default_factory=list)
    reader: DocumentReader | None = None

    def in_document(self, problem: Problem) -> Problem:
        """A validation problem of `graph` with `nodes[i]`/`edges[i]` counted as in the
        document (the graph leaves out nodes without an id and edges that are not objects)."""
        return problem if self.reader is None else self.reader.in_file(problem)


class DocumentReader(WorkflowReader):
    """`WorkflowReader` for documents: their members, and credentials given by name."""

    problem_code = "INVALID_DOCUMENT"
    workflow_keys = DOCUMENT_KEYS
    whole = "the document"
    nodes_required = False

    def credentials(self, data: Any, node_id: str) -> dict[str, str]:
        """Reads `{kind: {"name": N}}` as `{kind: N}`."""
        if data is None:
            return {}
        named = isinstance(data, dict) and all(
            isinstance(reference, dict)
            and set(reference) == {"name"}
            and isinstance(reference["name"], str)
            and reference["name"].strip()
            for reference in data.values()
        )
        if not named:
            self.add(
                'credentials must map credential kinds to {"name": credential name}, got '
                f"{show(data)}",
                "credentials",
                node_id,
            )
            return {}
        return {kind: reference["name"] for kind, reference in data.items()}


def read_document(data: Any) -> DocumentRead:
    """Read a document; `problems` lists everything wrong with its shape (the graph itself
    is validated by the caller, against the node types it has)."""
    version_problem = _format_version_problem(data)
    if version_problem is not None and version_problem.code == "UNSUPPORTED_FORMAT_VERSION":
        return DocumentRead(problems=[version_problem])
    reader = DocumentReader()
    if version_problem is not None:
        reader.problems.append(version_problem)
    name, settings, graph = reader.workflow(data)
    read = DocumentRead(
        name=name,
        settings=settings,
        graph=graph,
        problems=reader.problems,
        reader=reader,
    )
    if not isinstance(data, dict):
        return read
    description, tags = data.get("description"), data.get("tags")
    if isinstance(description, str):
        read.description = description
    if isinstance(tags, list) and all(isinstance(tag, str) for tag in tags):
        read.tags = tags
    read.pinned, pin_problems = _read_pins(data.get("pinData"), graph)
    read.problems.extend(pin_problems)
    return read


def _format_version_problem(data: Any) -> Problem | None:
    if not isinstance(data, dict):
        return None  # the reader says what the document should be
    version = data.get("formatVersion")
    if isinstance(version, int) and not isinstance(version, bool):
        if version > FORMAT_VERSION:
            return Problem(
                "UNSUPPORTED_FORMAT_VERSION",
                f"the document is in format version {version}; this Loom reads format "
                f"version {FORMAT_VERSION} and older (upgrade Loom to import it)",
                None,
                "formatVersion",
            )
        if version >= 1:
            return None
    wanted = f"a whole number from 1 to {FORMAT_VERSION}"
    return Problem(
        "INVALID_DOCUMENT",
        f"formatVersion must be {wanted}, got {show(version)}",
        None,
        "formatVersion",
    )


def _read_pins(pins: Any, graph: Graph) -> tuple[dict[str, list[dict[str, Any]]], list[Problem]]:
    """The document's pinned items by node id, and what is wrong with them."""
    if pins is None:
        return {}, []
    if not isinstance(pins, dict):
        return {}, [
            Problem(
                "INVALID_DOCUMENT",
                f"pinData must be a JSON object (node id -> items), got {show(pins)}",
                None,
                "pinData",
            )
        ]
    node_ids = {node.id for node in graph.nodes}
    read: dict[str, list[dict[str, Any]]] = {}
    problems: list[Problem] = []
    for node_id, items in pins.items():
        field = f"pinData.{escape(node_id)}"
        if node_id not in node_ids:
            problems.append(
                Problem(
                    "INVALID_DOCUMENT",
                    f"pinData pins items of node {quote(node_id)}, which the document does "
                    "not have",
                    None,
                    field,
                )
            )
            continue
        found = item_problems(items, field)
        if found:
            problems += found
        else:
            read[node_id] = items
    return read, problems
