"""Expression previews: `evaluateExpression` and `evaluateParameters`.

Each finds the node in the caller's workflow, the execution whose data it previews against
(the one named, which must be of that workflow, or the workflow's latest manual execution),
the node's input and the outputs its expressions reference in it (`preview_data`), then
evaluates with the run's own compiler and limits (`engine.preview`). Every expected failure
is a value of `ExpressionPreviewResult`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, cast

import orjson
import strawberry
from strawberry.scalars import JSON

from engine.expressions import referenced_nodes
from engine.output_pages import MAX_PAGE_BYTES, MIN_PAGE_BYTES
from engine.output_schema import type_of
from engine.preview import Failed, PreviewData, Rendered, preview_expression, preview_parameters
from engine.truncation import marker
from resolvers.context import Context
from resolvers.preview_data import (
    SKIPPED,
    SUCCEEDED,
    NoData,
    input_items,
    input_sources,
    no_execution,
    no_items,
    node_named,
    node_outputs,
)
from schema import preview_types, results
from schema.execution_types import checked_max_bytes
from schema.types import Problem
from storage import previews, workflows
from storage.models import Execution, Workflow

Info = strawberry.Info[Context, None]

PREVIEW_VALUE_BYTES = 64 * 1024
# A text longer than this is no parameter an editor previews as it is typed.
MAX_PREVIEW_TEXT_CHARS = 100_000

_item_index_argument = strawberry.argument(
    description="Which item of the node's input to evaluate for (from 0)."
)
_execution_argument = strawberry.argument(
    description="The execution whose data to use; it must be of this workflow. Default: the "
    "workflow's latest manual execution."
)
_max_bytes_argument = strawberry.argument(
    description=f"Cap on the value's JSON, from {MIN_PAGE_BYTES} to {MAX_PAGE_BYTES} bytes "
    "(64 KB by default); anything else is a field error with code BAD_USER_INPUT."
)


@dataclass(frozen=True, slots=True)
class _Found:
    """What a preview evaluates against."""

    node: dict[str, Any]
    execution: Execution
    data: PreviewData


async def evaluate_expression(
    info: Info,
    workflow_id: strawberry.ID,
    node_id: strawberry.ID,
    expression: Annotated[
        str,
        strawberry.argument(
            description="A parameter value as the node would hold it: text with `{{ }}` "
            "expressions (plain text is its own value)."
        ),
    ],
    item_index: Annotated[int, _item_index_argument] = 0,
    execution_id: Annotated[strawberry.ID | None, _execution_argument] = None,
    max_bytes: Annotated[int, _max_bytes_argument] = PREVIEW_VALUE_BYTES,
) -> results.ExpressionPreviewResult:
    if len(expression) > MAX_PREVIEW_TEXT_CHARS:
        return _invalid(
            "TEXT_TOO_LONG",
            f"the expression is longer than {MAX_PREVIEW_TEXT_CHARS:,} characters",
            "expression",
        )
    checked_max_bytes(max_bytes)
    found = await _find(info, str(workflow_id), str(node_id), item_index, execution_id, expression)
    if not isinstance(found, _Found):
        return found
    limits = info.context.services.expression_limits
    outcome = preview_expression(expression, found.data, item_index, limits)
    return _result(outcome, found, item_index, max_bytes)


async def evaluate_parameters(
    info: Info,
    workflow_id: strawberry.ID,
    node_id: strawberry.ID,
    item_index: Annotated[int, _item_index_argument] = 0,
    execution_id: Annotated[strawberry.ID | None, _execution_argument] = None,
    max_bytes: Annotated[int, _max_bytes_argument] = PREVIEW_VALUE_BYTES,
) -> results.ExpressionPreviewResult:
    checked_max_bytes(max_bytes)
    found = await _find(info, str(workflow_id), str(node_id), item_index, execution_id, None)
    if not isinstance(found, _Found):
        return found
    parameters = found.node.get("parameters") or {}
    limits = info.context.services.expression_limits
    outcome = preview_parameters(parameters, found.data, item_index, limits)
    return _result(outcome, found, item_index, max_bytes)


async def _find(
    info: Info,
    workflow_id: str,
    node_id: str,
    item_index: int,
    execution_id: strawberry.ID | None,
    text: str | None,
) -> _Found | results.ExpressionPreviewResult:
    """The node, execution and data a preview reads, or why there are none."""
    viewer = info.context.viewer()
    services = info.context.services
    async with info.context.database.session() as session:
        # Pins are not what a preview reads (megabytes, on every keystroke).
        workflow = await workflows.get_workflow(
            session, workflow_id, viewer.workspace_ids, pins=False
        )
        if workflow is None:
            return _not_found(f"workflow {workflow_id!r} not found", workflow_id)
        node = node_named(workflow, node_id)
        if node is None:
            return _not_found(f"node {node_id!r} not found in workflow {workflow_id!r}", node_id)
        if execution_id is not None:
            execution = await previews.execution_of_workflow(
                session, str(execution_id), workflow_id, viewer.workspace_ids
            )
            if execution is None:
                return _not_found(
                    f"execution {str(execution_id)!r} of workflow {workflow_id!r} not found",
                    str(execution_id),
                )
        else:
            execution = await previews.latest_manual_execution(
                session, workflow_id, viewer.workspace_ids
            )
            if execution is None:
                return _no_data(no_execution(workflow, node))
        runs = await services.preview_outputs.final_runs(session, execution)
        sources = input_sources(workflow, node, execution, runs)
        if isinstance(sources, NoData):
            return _no_data(sources)
        try:
            items = await input_items(session, services.preview_outputs, sources, execution)
        except previews.OutputTooLarge as exc:
            return _too_large(exc, runs, node_id, execution.id)
        if not items:
            return _no_data(no_items(node, execution))
        if not 0 <= item_index < len(items):
            return _invalid(
                "ITEM_INDEX_OUT_OF_RANGE",
                f"itemIndex {item_index} is out of range: node {node['name']!r} receives "
                f"{len(items)} item{'s' if len(items) != 1 else ''} in execution "
                f"{execution.id!r} (0 to {len(items) - 1})",
                "itemIndex",
                node_id,
            )
        referenced = _referenced(workflow, node, text)
        missing = [
            name
            for name, ref_id in referenced.items()
            if ref_id not in runs or runs[ref_id].status not in (SUCCEEDED, SKIPPED)
        ]
        if missing:
            return _no_data(
                NoData(
                    f"node {missing[0]!r} has no data in execution {execution.id!r} (it did "
                    "not run successfully there): run the workflow (or that node) first",
                    node_id,
                    execution.id,
                )
            )
        try:
            outputs = await node_outputs(session, services.preview_outputs, runs, referenced)
        except previews.OutputTooLarge as exc:
            return _too_large(exc, runs, node_id, execution.id)
    data = PreviewData(
        input_items=items,
        node_outputs=outputs,
        execution={"id": execution.id, "mode": execution.mode},
        workflow={"id": workflow.id, "name": workflow.name, "version": workflow.version},
        now=datetime.now(UTC).isoformat(),
    )
    return _Found(node, execution, data)


def _referenced(workflow: Workflow, node: dict[str, Any], text: str | None) -> dict[str, str]:
    """The nodes of the draft its expressions name (`$("X")`, `$node["X"]`): name -> id.
    Names of no node are left out: evaluating says so, as at run time."""
    names = referenced_nodes(text if text is not None else node.get("parameters") or {})
    ids = {data["name"]: data["id"] for data in workflow.nodes}
    return {name: ids[name] for name in sorted(names) if name in ids}


def _result(
    outcome: Rendered | Failed, found: _Found, item_index: int, max_bytes: int
) -> results.ExpressionPreviewResult:
    execution_id = strawberry.ID(found.execution.id)
    if isinstance(outcome, Failed):
        position = outcome.position
        return preview_types.ExpressionError(
            code=outcome.code,
            message=outcome.message,
            position=None
            if position is None
            else preview_types.TextRange(start=position[0], end=position[1]),
            parameter=outcome.parameter,
            limit=outcome.limit,
            setting=outcome.setting,
            execution_id=execution_id,
        )
    value = outcome.value
    encoded = orjson.dumps(value) if isinstance(value, dict | list | str) else b""
    truncated = len(encoded) > max_bytes
    return preview_types.ExpressionValue(
        value=cast(
            JSON, marker(encoded[:max_bytes], len(encoded), max_bytes) if truncated else value
        ),
        type=type_of(value),
        truncated=truncated,
        execution_id=execution_id,
        item_index=item_index,
        item_count=len(found.data.input_items),
    )


def _not_found(message: str, identifier: str) -> results.NotFoundError:
    return results.NotFoundError(message=message, id=strawberry.ID(identifier))


def _too_large(
    exc: previews.OutputTooLarge, runs: dict[str, Any], node_id: str, execution_id: str
) -> preview_types.NoDataError:
    """A preview that would decode an output larger than previews read."""
    names = {run.id: name for name, run in runs.items()}
    of = names.get(exc.run_id, exc.run_id)
    limit = previews.MAX_PREVIEW_OUTPUT_BYTES // (1024 * 1024)
    return _no_data(
        NoData(
            f"the output of node {of!r} in execution {execution_id!r} is "
            f"{exc.raw_bytes / (1024 * 1024):.0f} MB: too large to preview (at most {limit} MB "
            "are read); run the workflow on less data to preview it",
            node_id,
            execution_id,
        )
    )


def _no_data(missing: NoData) -> preview_types.NoDataError:
    return preview_types.NoDataError(
        message=missing.message,
        node_id=strawberry.ID(missing.node_id),
        execution_id=None if missing.execution_id is None else strawberry.ID(missing.execution_id),
    )


def _invalid(
    code: str, message: str, field: str, node_id: str | None = None
) -> results.ValidationError:
    return results.ValidationError(
        message=message,
        problems=[
            Problem(
                code=code,
                message=message,
                node_id=None if node_id is None else strawberry.ID(node_id),
                field=field,
            )
        ],
    )
