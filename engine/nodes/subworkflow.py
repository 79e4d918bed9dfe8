"""Sub-workflows: `execute_workflow` calls another workflow of the same workspace;
`execute_workflow_trigger` is where the called workflow starts.

A call starts one execution with all the node's items, or one per item. When the node waits
for them it parks (a durable wait, like `wait`): its execution goes WAITING and frees its
worker slot, so calls nested deeper than the worker pool is wide cannot deadlock it. The
called executions wake it when the last of them ends; should that wake-up be lost, the parked
attempt looks again every `RECHECK_S`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.node_catalog import CORE, Catalog, ParameterHint
from engine.node_types import NodeGroup, NodeType, Port
from engine.nodes import schema
from engine.nodes.base import (
    CallRefused,
    Item,
    NodeError,
    NodeRunContext,
    PortItems,
    SubworkflowCall,
    Suspend,
)
from engine.nodes.parameters import choice, flag, settings, text

EXECUTE_WORKFLOW = "execute_workflow"
TRIGGER = "execute_workflow_trigger"
SUBWORKFLOW_MODE = "subworkflow"
RECHECK_S = 300.0


async def execute_workflow_trigger(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    """The items the calling node sent; run on its own, the execution input as one item."""
    given = list(inputs.get("main", []))
    if ctx.info.mode == SUBWORKFLOW_MODE and len(given) == 1:
        items = given[0].get("items")
        if isinstance(items, list):
            return {"main": [item for item in items if isinstance(item, dict)]}
    return {"main": given}


async def execute_workflow(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    items = list(inputs.get("main", []))
    parameters = settings(ctx, items)
    workflow_id = text(parameters, "workflowId").strip()
    source = choice(parameters, "source", ("published", "draft"), default="published")
    mode = choice(parameters, "mode", ("all_items", "each_item"), default="all_items")
    wait = flag(parameters, "waitForCompletion", default=True)
    caller = ctx.resources.workflows if ctx.resources is not None else None
    if caller is None:
        raise NodeError(
            "sub-workflows cannot be called in this process", error_type="SUBWORKFLOWS_UNAVAILABLE"
        )
    if ctx.resume_at is None:  # the attempt's first run: start the calls
        if not items:
            return {"main": []}
        batches = [[item] for item in items] if mode == "each_item" else [items]
        info = ctx.info
        call = SubworkflowCall(
            workspace_id=info.workspace_id,
            workflow_id=workflow_id,
            use_draft=source == "draft",
            batches=batches,
            wait=wait,
            parent_execution_id=info.execution_id,
            parent_node_id=ctx.node.id,
            parent_run_id=ctx.run_id,
            depth=info.depth + 1,
        )
        try:
            await caller.start(call)
        except CallRefused as refused:
            raise NodeError(
                refused.message, error_type=refused.code, details={"workflowId": workflow_id}
            ) from None
        if not wait:
            return {"main": items}
        raise Suspend(_recheck_at(), on_children=True)
    # Their outputs are this node's: too large together, refused before they are read.
    results = await caller.results(ctx.run_id, ctx.max_output_bytes)
    if results is None:
        raise Suspend(_recheck_at(), on_children=True)
    output: list[Item] = []
    for result in results:
        if result.status != "SUCCEEDED":
            error = result.error or {}
            reason = error.get("message") or result.status.lower()
            raise NodeError(
                f"the called workflow's execution {result.execution_id} ended "
                f"{result.status}: {reason}",
                error_type="SUBWORKFLOW_FAILED",
                details={
                    "executionId": result.execution_id,
                    "status": result.status,
                    "error": error,
                },
            )
        output.extend(result.output)
    return {"main": output}


def _recheck_at() -> datetime:
    return datetime.now(UTC) + timedelta(seconds=RECHECK_S)


def execute_workflow_type() -> NodeType:
    return NodeType(
        name=EXECUTE_WORKFLOW,
        version=1,
        display_name="Execute Workflow",
        description="Runs another workflow of this workspace with the items (it starts at its "
        "'When Called by Another Workflow' trigger) and, when waiting, outputs what it returns.",
        group=NodeGroup.FLOW,
        parameters_schema=schema.parameters(
            {
                "workflowId": schema.text(
                    "Workflow", "The id of the workflow to run.", minLength=1, maxLength=255
                ),
                "source": schema.choice(
                    "Version",
                    "published: the workflow's published version. draft: its current draft.",
                    ("published", "draft"),
                    default="published",
                ),
                "mode": schema.choice(
                    "Mode",
                    "all_items: one execution with all the items. each_item: one execution per "
                    "item, outputs concatenated in item order.",
                    ("all_items", "each_item"),
                    default="all_items",
                ),
                "waitForCompletion": schema.flag(
                    "Wait for completion",
                    "Wait for the called executions and output the items they return (their "
                    "last node's); otherwise start them and pass the items on.",
                    default=True,
                ),
            },
            required=("workflowId",),
        ),
        catalog=Catalog(
            category=CORE,
            subcategory="Helpers",
            icon="fa:sign-in-alt",
            documentation_url="docs/api.md#sub-workflows",
            hints=(ParameterHint("workflowId", placeholder="wf_..."),),
        ),
        execute=execute_workflow,
    )


def execute_workflow_trigger_type() -> NodeType:
    return NodeType(
        name=TRIGGER,
        version=1,
        display_name="When Called by Another Workflow",
        description="Starts the workflow when an Execute Workflow node calls it; outputs the "
        "items it was sent (run by hand: the run's input as its item).",
        group=NodeGroup.TRIGGER,
        inputs=(),
        outputs=(Port(),),
        parameters_schema=schema.parameters({}),
        catalog=Catalog(
            category=CORE,
            subcategory="Triggers",
            icon="fa:sign-out-alt",
            documentation_url="docs/api.md#sub-workflows",
        ),
        execute=execute_workflow_trigger,
    )
