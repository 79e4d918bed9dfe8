"""Descriptors of Loom's built-in node types.

They reach the registry through the `loom.node_types` entry point declared in `pyproject.toml`,
the same way a plugin's types do. Each descriptor lives beside its behaviour (`flow`,
`edit_fields`, `transform`, `sort`, `merge`, `webhook`, `subworkflow`, `code`; the HTTP
Request node's in `http_type`, so that its behaviour and aiohttp load only when needed);
their parameters' JSON Schemas are built with `engine.nodes.schema`.

Ports of each type (inputs -> outputs):

    manual_trigger  (none) -> main
    set, sort, limit, aggregate, split_out, noop, wait  main -> main
    if              main -> true, false
    switch          main -> output0, output1, output2, output3, fallback
                    (rule i sends its items to output<i>; items no rule takes go to fallback)
    merge           input1, input2 (one connection each) -> main
    filter          main -> main (kept items), discarded
    stop_and_error  main -> (none)
    execute_workflow, http_request, respond_to_webhook, code  main -> main
    execute_workflow_trigger, webhook, schedule  (none) -> main
"""

from __future__ import annotations

from engine.node_types import NodeType
from engine.nodes import (
    code,
    edit_fields,
    flow,
    http_type,
    merge,
    sort,
    subworkflow,
    transform,
    webhook,
)


def node_types() -> list[NodeType]:
    """Every built-in node type (the `builtin` entry point of `loom.node_types`)."""
    return [
        flow.manual_trigger_type(),
        edit_fields.set_type(),
        edit_fields.set_type_v2(),
        flow.if_type(),
        flow.switch_type(),
        merge.merge_type(),
        flow.filter_type(),
        sort.sort_type(),
        transform.limit_type(),
        transform.aggregate_type(),
        transform.split_out_type(),
        flow.noop_type(),
        flow.stop_and_error_type(),
        flow.wait_type(),
        http_type.http_request_type(),
        webhook.webhook_type(),
        webhook.respond_to_webhook_type(),
        flow.schedule_type(),
        subworkflow.execute_workflow_type(),
        subworkflow.execute_workflow_trigger_type(),
        code.node_type(),
    ]
