"""Export and import of workflows as documents (`engine.workflow_document`).

`export_document_of` and `import_document` work on a database with given node types and
limits, so that the command line (`loom export`, `loom import`) does exactly what the API
does; the API's resolvers (resolvers/workflow_documents.py) are built around them.

An import creates a new draft in the workspace (version 1, unpublished). The document is
read and validated as a save is: its shape, text, settings and graph (size, ids, edges,
cycles, ...) must be right, or nothing is stored and every problem is returned at once. What
depends on where the document is imported becomes node issues of the saved draft instead (it
cannot run or be published until they are fixed): a node type or type version that is not
installed (`storage.workflow_checks.checked_graph`), and a credential the workspace has no
credential of that name and kind for (the reference is left out; the issue names it). A
credential of another workspace is never found by its name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from engine.credentials import KINDS
from engine.graph import Graph, Node
from engine.node_types import NodeTypeLookup
from engine.pins import size_problems
from engine.validation import GraphLimits, Problem, Severity
from engine.validation.text import escape, quote
from engine.workflow_document import export_document, read_document
from engine.workflow_fields import Collected, checked_texts
from storage import audit, credentials, workflows
from storage.accounts import Principal
from storage.db import Database
from storage.errors import NotFoundError
from storage.models import Workflow
from storage.workflow_checks import checked_graph, reference_problems


async def export_document_of(
    database: Database, workflow_id: str, version: int | None, workspace_ids: Sequence[str]
) -> tuple[dict[str, Any], int]:
    """The document of a workflow's draft (`version` None) or of its snapshot `version`, and
    the version it holds; `NotFoundError` when either is missing or not in `workspace_ids`."""
    async with database.session() as session:
        workflow = await workflows.get_workflow(session, workflow_id, workspace_ids)
        if workflow is None:
            raise NotFoundError("workflow", workflow_id)
        name, nodes, edges, settings, pinned = (
            workflow.name,
            workflow.nodes,
            workflow.edges,
            workflow.settings,
            workflow.pinned_data,
        )
        if version is not None:
            snapshot = await workflows.get_version(session, workflow_id, version, workspace_ids)
            if snapshot is None:
                raise NotFoundError(f"version {version} of workflow", workflow_id)
            name, nodes, edges, settings, pinned = (
                snapshot.name,
                snapshot.nodes,
                snapshot.edges,
                snapshot.settings,
                snapshot.pinned_data,
            )
        graph = Graph.from_json(nodes, edges)
        used = {
            credential_id for node in graph.nodes for credential_id in node.credentials.values()
        }
        names = await credentials.names_by_id(session, used, workflow.workspace_id) if used else {}
    document = export_document(
        name=name,
        description=workflow.description,
        tags=list(workflow.tags),
        settings=settings,
        graph=graph,
        credential_names=names,
        pinned=pinned,
    )
    return document, workflow.version if version is None else version


async def import_document(
    database: Database,
    registry: NodeTypeLookup,
    limits: GraphLimits,
    data: Any,
    *,
    workspace_id: str,
    created_by: str | None,
    actor: Principal | None = None,
) -> Workflow | list[Problem]:
    """Create a workflow in the workspace from a document; the new draft, or every problem
    that refuses the document (nothing is stored then). With `actor`, the audit log records
    them importing it."""
    read = read_document(data)
    if any(problem.code == "UNSUPPORTED_FORMAT_VERSION" for problem in read.problems):
        return read.problems
    texts = Collected()
    tags = checked_texts(texts, read.name, read.description, read.tags)
    graph, node_issues, found = await checked_graph(
        registry, limits, read.graph, Collected(), imported=True
    )
    # A field the reader already complained about (and replaced by its default) is not
    # reported twice.
    refusing = list(read.problems)
    reported = {(problem.node_id, problem.field) for problem in refusing}
    refusing += [
        problem
        for problem in [*texts.problems, *map(read.in_document, found)]
        if (problem.node_id, problem.field) not in reported
    ]
    refusing += size_problems(read.pinned, limits, field="pinData")
    async with database.transaction() as session:
        graph = await _linked_credentials(session, graph, workspace_id, node_issues)
        refusing += await reference_problems(session, graph, workspace_id)
        if refusing:
            return refusing
        row = Workflow(
            workspace_id=workspace_id,
            name=read.name.strip(),
            description=read.description,
            tags=tags,
            nodes=graph.nodes_to_json(),
            edges=graph.edges_to_json(),
            node_issues=node_issues,
            settings=read.settings,
            pinned_data=read.pinned,
            created_by=created_by,
        )
        await workflows.create_workflow(session, row)
        if actor is not None:
            await audit.record(
                session,
                actor=actor,
                action=audit.AuditAction.WORKFLOW_CREATE,
                workspace_id=workspace_id,
                target_kind="workflow",
                target_id=row.id,
                details={"name": row.name, "imported": True},
            )
    return row


async def _linked_credentials(
    session: AsyncSession,
    graph: Graph,
    workspace_id: str,
    node_issues: dict[str, list[dict[str, object]]],
) -> Graph:
    """The graph with each credential its nodes name (`DocumentRead.graph`) linked to the
    workspace's credential of that name and kind; a reference that cannot be linked is left
    out and becomes a node issue in `node_issues`."""
    wanted = {name for node in graph.nodes for name in node.credentials.values()}
    if not wanted:
        return graph
    found = await credentials.find_by_names(session, wanted, workspace_id)
    nodes: list[Node] = []
    for node in graph.nodes:
        linked: dict[str, str] = {}
        for kind, name in node.credentials.items():
            if kind not in KINDS:
                code, message = "UNKNOWN_CREDENTIAL_KIND", f"unknown credential kind {quote(kind)}"
            elif name not in found:
                code = "UNKNOWN_CREDENTIAL"
                message = (
                    f"no credential named {quote(name)} in this workspace: create a {kind} "
                    "credential and choose it for this node"
                )
            elif found[name][1] != kind:
                code = "CREDENTIAL_KIND_MISMATCH"
                message = (
                    f"credential {quote(name)} of this workspace is a {found[name][1]}, "
                    f"not a {kind}"
                )
            else:
                linked[kind] = found[name][0]
                continue
            field = f"credentials.{escape(kind)}"
            issue = Problem(code, message, node.id, field, severity=Severity.PARAMETER)
            node_issues.setdefault(node.id, []).append(issue.to_json())
        nodes.append(replace(node, credentials=linked))
    return replace(graph, nodes=tuple(nodes))
