"""What a draft must satisfy to be stored, beyond its own graph: the node issues and
refusals of a save (`checked_graph`), and the credentials and workflows it refers to in its
workspace (`reference_problems`). Used by the API's saves and by imports of documents."""

from __future__ import annotations

from dataclasses import replace

from sqlmodel.ext.asyncio.session import AsyncSession

from engine import editing
from engine.credentials import KINDS
from engine.graph import Graph
from engine.node_types import NodeTypeLookup
from engine.nodes.subworkflow import EXECUTE_WORKFLOW
from engine.validation import GraphLimits, Problem, Severity, check_graph
from engine.workflow_fields import Collected
from storage import credential_shares, credentials, workflows

# Problems of a node whose type, or type version, is not installed. A node that arrives with
# the workflow (from an imported document, or kept as it was in the stored draft: a plugin
# uninstalled since) is saved with them as node issues: the draft cannot run or be published
# until the type is installed or the node changed, and the rest of it can still be edited.
# A node added with such a type, or changed to one, is refused as before.
_ABSENT_TYPE = frozenset({"UNKNOWN_NODE_TYPE", "UNKNOWN_TYPE_VERSION"})


async def checked_graph(
    registry: NodeTypeLookup,
    limits: GraphLimits,
    graph: Graph,
    collected: Collected,
    previous: Graph | None = None,
    *,
    imported: bool = False,
) -> tuple[Graph, dict[str, list[dict[str, object]]], list[Problem]]:
    """The graph to store (each node's type version written down: `editing.pin_type_versions`,
    `previous` the graph it replaces), its node issues, and the problems that refuse it.
    `imported`: every node arrives with the workflow (see `_ABSENT_TYPE`)."""
    graph = editing.pin_type_versions(graph, registry.latest_version, previous)
    report = await check_graph(graph, registry, limits)
    if imported:
        arrived = {node.id for node in graph.nodes}
    else:
        before = {node.id: (node.type, node.type_version) for node in (previous or Graph()).nodes}
        arrived = {
            node.id for node in graph.nodes if before.get(node.id) == (node.type, node.type_version)
        }
    node_issues: dict[str, list[dict[str, object]]] = {}
    refusing = list(collected.problems)
    for problem in report.structural:
        if problem.code in _ABSENT_TYPE and problem.node_id in arrived:
            kept = replace(problem, severity=Severity.PARAMETER)
            node_issues.setdefault(problem.node_id, []).append(kept.to_json())
        else:
            refusing.append(problem)
    for node_id, problems in report.parameters.items():
        if problems:
            node_issues.setdefault(node_id, []).extend(problem.to_json() for problem in problems)
    return graph, node_issues, refusing


async def reference_problems(
    session: AsyncSession, graph: Graph, workspace_id: str
) -> list[Problem]:
    """Every credential reference (`credentials: {kind: id}` of a node) must name a
    credential of that kind that the workflow's workspace owns or is shared, and every
    workflow an Execute Workflow node names (when not an expression) a workflow of that
    workspace."""
    problems = await _called_workflow_problems(session, graph, workspace_id)
    references = [
        (node.id, kind, credential_id)
        for node in graph.nodes
        for kind, credential_id in node.credentials.items()
    ]
    if not references:
        return problems
    used = {credential_id for _, _, credential_id in references}
    await credential_shares.hold(session, used, workspace_id)
    found = await credentials.kinds_by_id(session, used, workspace_id)
    for node_id, kind, credential_id in references:
        field = f"credentials.{kind}"
        if kind not in KINDS:
            problems.append(
                Problem(
                    "UNKNOWN_CREDENTIAL_KIND", f"unknown credential kind {kind!r}", node_id, field
                )
            )
        elif credential_id not in found:
            message = (
                f"credential {credential_id!r} is neither owned by nor shared with this "
                "workflow's workspace"
            )
            problems.append(Problem("UNKNOWN_CREDENTIAL", message, node_id, field))
        elif found[credential_id] != kind:
            message = f"credential {credential_id!r} is a {found[credential_id]}, not a {kind}"
            problems.append(Problem("CREDENTIAL_KIND_MISMATCH", message, node_id, field))
    return problems


async def _called_workflow_problems(
    session: AsyncSession, graph: Graph, workspace_id: str
) -> list[Problem]:
    calls = [
        (node.id, node.parameters["workflowId"])
        for node in graph.nodes
        if node.type == EXECUTE_WORKFLOW
        and isinstance(node.parameters.get("workflowId"), str)
        and "{{" not in node.parameters["workflowId"]
    ]
    if not calls:
        return []
    found = await workflows.existing_ids(session, {called for _, called in calls}, workspace_id)
    return [
        Problem(
            "UNKNOWN_WORKFLOW",
            f"workflow {called!r} not found in this workflow's workspace",
            node_id,
            "parameters.workflowId",
        )
        for node_id, called in calls
        if called not in found
    ]
