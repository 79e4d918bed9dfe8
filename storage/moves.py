"""Moving a workflow to another workspace: what would refuse it, and the move itself.

A workflow moves with everything that is its own: its versions, executions (with their
node runs, outputs and events), webhook routes, schedules and pinned data. Those hang off
the workflow's id, except executions, which name their workspace too and are moved with it.

`move_problems` finds, in the draft and the published version, every reason the workflow
could not work in the target, all at once:

    CREDENTIAL_NOT_AVAILABLE   a node's credential is neither owned by nor shared with it
    SUBWORKFLOW_OUTSIDE        an Execute Workflow node calls a workflow not in the target
    CALLED_BY_WORKFLOW         a workflow left in the source calls this one (`nodeId` is
                               the calling workflow's node; the message names that workflow)
    NODE_TYPE_NOT_AVAILABLE    a declarative `ws.` type (that version) the target lacks
    HAS_RUNNING_EXECUTIONS     an execution is queued, running or waiting

(and, found by the caller, who holds the node type policies: NODE_TYPE_DISABLED for an
active workflow whose published version uses a type the target disables, as activating it
there would be refused.)

Webhook paths are unique server-wide (storage/webhooks.py), so a move never makes two
collide. Calls whose workflow id is an expression cannot be checked before they run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlmodel import col, func, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.graph import Node
from engine.nodes.subworkflow import EXECUTE_WORKFLOW
from engine.validation import Problem
from engine.validation.text import escape
from storage import credential_shares, credentials, node_type_definitions, workflows
from storage.errors import VersionConflictError
from storage.executions import UNFINISHED
from storage.models import Execution, Workflow, WorkflowVersion
from storage.types import utcnow

DECLARATIVE_PREFIX = "ws."


def _nodes(stored: Iterable[list[dict[str, Any]]]) -> list[Node]:
    """The nodes of these node lists (the draft's and the published version's)."""
    return [Node.from_json(data) for nodes in stored for data in nodes]


def _called(node: Node) -> str | None:
    """The workflow id an Execute Workflow node calls, when it is not an expression."""
    called = node.parameters.get("workflowId")
    if node.type != EXECUTE_WORKFLOW or not isinstance(called, str) or "{{" in called:
        return None
    return called


async def published_nodes(session: AsyncSession, workflow: Workflow) -> list[dict[str, Any]]:
    """The nodes of the workflow's published version (none when it is not published)."""
    if workflow.published_version is None:
        return []
    version = await workflows.get_version(
        session, workflow.id, workflow.published_version, [workflow.workspace_id], pins=False
    )
    return [] if version is None else version.nodes


async def move_problems(session: AsyncSession, workflow: Workflow, target_id: str) -> list[Problem]:
    """Every reason the workflow cannot move to the target workspace (none: it may)."""
    nodes = _nodes([workflow.nodes, await published_nodes(session, workflow)])
    problems = await _credential_problems(session, nodes, target_id)
    problems += await _call_problems(session, workflow, nodes, target_id)
    problems += await _caller_problems(session, workflow)
    problems += await _type_problems(session, nodes, target_id)
    unfinished = await session.exec(
        select(func.count()).where(
            Execution.workflow_id == workflow.id, col(Execution.status).in_(UNFINISHED)
        )
    )
    if count := int(unfinished.one()):
        message = (
            f"the workflow has {count} execution(s) queued, running or waiting; cancel them "
            "or let them finish first"
        )
        problems.append(Problem("HAS_RUNNING_EXECUTIONS", message, None, "id"))
    return _unique(problems)


def _unique(problems: list[Problem]) -> list[Problem]:
    """The draft and the published version often share a node: one problem for both."""
    seen: dict[tuple[str, str | None, str | None], Problem] = {}
    for problem in problems:
        seen.setdefault((problem.code, problem.node_id, problem.field), problem)
    return list(seen.values())


async def _credential_problems(
    session: AsyncSession, nodes: list[Node], target_id: str
) -> list[Problem]:
    used = {credential_id for node in nodes for credential_id in node.credentials.values()}
    if not used:
        return []
    usable = await credentials.kinds_by_id(session, used, target_id)
    return [
        Problem(
            "CREDENTIAL_NOT_AVAILABLE",
            f"credential {credential_id!r} is neither owned by nor shared with the target "
            "workspace: share it with that workspace first, or choose another",
            node.id,
            f"credentials.{escape(kind)}",
        )
        for node in nodes
        for kind, credential_id in node.credentials.items()
        if credential_id not in usable
    ]


async def _call_problems(
    session: AsyncSession, workflow: Workflow, nodes: list[Node], target_id: str
) -> list[Problem]:
    calls = [(node, called) for node in nodes if (called := _called(node)) is not None]
    # A workflow calling itself moves with itself.
    wanted = {called for _, called in calls if called != workflow.id}
    found = await workflows.existing_ids(session, wanted, target_id) if wanted else set()
    return [
        Problem(
            "SUBWORKFLOW_OUTSIDE",
            f"this node calls workflow {called!r}, which is not in the target workspace: "
            "the call would cross workspaces",
            node.id,
            "parameters.workflowId",
        )
        for node, called in calls
        if called != workflow.id and called not in found
    ]


async def _caller_problems(session: AsyncSession, workflow: Workflow) -> list[Problem]:
    """Workflows staying in the source whose draft or published version calls this one."""
    drafts = await session.exec(
        select(Workflow.id, Workflow.name, Workflow.nodes).where(
            Workflow.workspace_id == workflow.workspace_id, Workflow.id != workflow.id
        )
    )
    published = await session.exec(
        select(Workflow.id, Workflow.name, WorkflowVersion.nodes)
        .join(WorkflowVersion, col(WorkflowVersion.workflow_id) == col(Workflow.id))
        .where(
            Workflow.workspace_id == workflow.workspace_id,
            Workflow.id != workflow.id,
            col(WorkflowVersion.version) == col(Workflow.published_version),
        )
    )
    problems = []
    for caller_id, name, nodes in [*drafts.all(), *published.all()]:
        for data in nodes:
            node = Node.from_json(data)
            if _called(node) == workflow.id:
                message = (
                    f"workflow {name!r} ({caller_id}) stays in this workspace and calls this "
                    f"workflow from its node {node.id!r}: the call would cross workspaces"
                )
                problems.append(
                    Problem("CALLED_BY_WORKFLOW", message, node.id, "parameters.workflowId")
                )
    return problems


async def _type_problems(session: AsyncSession, nodes: list[Node], target_id: str) -> list[Problem]:
    declarative = [node for node in nodes if node.type.startswith(DECLARATIVE_PREFIX)]
    if not declarative:
        return []
    defined = {
        (row.name, row.version)
        for row in await node_type_definitions.current_versions(session, [target_id])
    }
    return [
        Problem(
            "NODE_TYPE_NOT_AVAILABLE",
            f"node type {node.type!r} version {node.type_version} is declared in this "
            "workspace only: declare it in the target workspace first",
            node.id,
            "type",
        )
        for node in declarative
        if (node.type, node.type_version) not in defined
    ]


async def hold(session: AsyncSession, workflow_id: str) -> None:
    """Lock the workflow's row until the move commits (PostgreSQL; SQLite has one writer),
    before the move's checks: a start of it (`executions.lock_workflows`, FOR SHARE) either
    committed before, and is seen by the checks, or waits and then finds the workflow gone
    from its workspace."""
    await session.exec(select(Workflow.id).where(Workflow.id == workflow_id).with_for_update())


async def move(session: AsyncSession, workflow: Workflow, target_id: str) -> None:
    """Move the workflow and its executions (everything else follows the workflow's id).
    The draft's version is bumped, only from the version the checks saw: a save that read
    the workflow before the move (and checked its references against the source) gets a
    VersionConflictError rather than writing into the target what it checked for the
    source."""
    # Its node issues that depend on the workspace (a credential no longer shared) are
    # derived again for the target.
    issues = await credential_shares.issues_in(
        session, workflow.nodes, workflow.node_issues, target_id
    )
    result = await session.exec(
        update(Workflow)
        .where(col(Workflow.id) == workflow.id, col(Workflow.version) == workflow.version)
        .values(
            workspace_id=target_id,
            version=workflow.version + 1,
            node_issues=issues,
            updated_at=utcnow(),
        )
    )
    if result.rowcount == 0:
        current = (
            await session.exec(select(Workflow.version).where(Workflow.id == workflow.id))
        ).first()
        raise VersionConflictError(workflow.id, workflow.version, current or workflow.version)
    await session.exec(
        update(Execution)
        .where(col(Execution.workflow_id) == workflow.id)
        .values(workspace_id=target_id)
    )
