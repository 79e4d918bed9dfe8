"""The Code node: JavaScript over the node's items, in the V8 sandbox of `engine.code`.

    all_items   the script runs once; `$input.all()` is every item; it returns an array
    each_item   the script runs per item; `$json` is the item; it returns an item or an array

Items go in as `{json: item}` (n8n's shape) and come out as `{json: {...}}` or plain objects.
The script's source is taken literally: it is never a `{{ }}` template (`code_parameters`).
Its `$("Name")` references must name upstream nodes: checked on save when the name is
literal, and at run time otherwise. A call is given the items of the upstream nodes the
script names, or of all of them when its source does not tell (`engine.code.references`).
Limits (time, heap, result size) end the script with CODE_TIMEOUT, CODE_MEMORY_LIMIT or
CODE_ERROR; what it printed is kept on the node run.
"""

from __future__ import annotations

from engine.code import CodeCall, CodeFailure, CodeSandbox
from engine.code.references import offered_nodes
from engine.code.sandbox import shared_sandbox
from engine.node_catalog import CORE, Catalog, ParameterHint, Widget
from engine.node_types import NodeGroup, NodeType
from engine.nodes.base import NodeError, NodeRunContext, PortItems

CODE = "code"
MODES = ("all_items", "each_item")
MAX_CODE_CHARS = 256 * 1024
# A node's own timeout stops the script this much earlier (at most), so that the script's
# limit, not the node's, ends it, and the error says CODE_TIMEOUT.
TIMEOUT_MARGIN_S = 0.1

_DEFAULT_CODE = "return $input.all().map((item) => ({ json: { ...item.json } }));"


def node_type() -> NodeType:
    """The `code` node type (listed among the built-ins)."""
    return NodeType(
        name=CODE,
        version=1,
        display_name="Code",
        description="Runs JavaScript on the items: map, filter, reshape, compute. The script "
        "has no network, files, timers or state between runs, and runs under time and memory "
        "limits.",
        group=NodeGroup.TRANSFORM,
        parameters_schema={
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "mode": {
                    "type": "string",
                    "title": "Mode",
                    "description": "all_items: run once; $input.all() holds every item and the "
                    "code returns an array of items. each_item: run once per item; $json is "
                    "the item and the code returns an item (or an array of items, [] to drop "
                    "it).",
                    "enum": list(MODES),
                    "default": "all_items",
                },
                "code": {
                    "type": "string",
                    "title": "JavaScript",
                    "description": "The body of a function: `return` the items. Available: "
                    "$input (.all(), .first(), .last(), .item), $json, $itemIndex, "
                    '$("Node") and $node["Node"] for upstream nodes, $execution, $workflow, '
                    "$now (ISO text), console.log. Taken literally: {{ }} is not an "
                    "expression here.",
                    "minLength": 1,
                    "maxLength": MAX_CODE_CHARS,
                    "default": _DEFAULT_CODE,
                },
            },
            "required": ["code"],
            "additionalProperties": False,
        },
        catalog=Catalog(
            category=CORE,
            subcategory="Helpers",
            icon="fa:code",
            documentation_url="docs/code-node.md",
            hints=(
                ParameterHint("mode"),
                ParameterHint("code", widget=Widget.CODE),
            ),
        ),
        execute=run_code,
        code_parameters=(CODE,),
    )


async def run_code(context: NodeRunContext, inputs: PortItems) -> PortItems:
    parameters = context.node.parameters
    code = parameters.get(CODE)
    if not isinstance(code, str) or not code.strip():
        raise NodeError("the node has no code to run", error_type="CODE_ERROR")
    mode = parameters.get("mode", "all_items")
    sandbox = _sandbox(context)
    upstream = (
        context.ancestor_names()
        if context.ancestor_names is not None
        else frozenset(context.node_outputs)
    )
    offered = offered_nodes(code, upstream)
    info = context.info
    call = CodeCall(
        code=code,
        mode=mode,
        items=list(inputs.get("main") or []),
        nodes={name: context.node_outputs.get(name, []) for name in sorted(offered)},
        facts={
            "execution": {"id": info.execution_id, "mode": info.mode},
            "workflow": {
                "id": info.workflow_id,
                "name": info.workflow_name,
                "version": info.workflow_version,
            },
            "now": info.now,
        },
        timeout_s=_timeout_s(context, sandbox),
    )
    try:
        result = await sandbox.run(call)
    except CodeFailure as failure:
        context.console = failure.console
        details = {"line": failure.line, "column": failure.column, **failure.details}
        message = _worded(failure)
        if failure.error_type == "CODE_TIMEOUT":
            limit_s = context.node.timeout_s or sandbox.limits.timeout_s
            details["timeoutSeconds"] = limit_s
            message = f"the code ran longer than {limit_s:g} s and was stopped"
            if "sandboxes" in failure.details:
                message = (
                    f"the code did not start within {limit_s:g} s: all "
                    f"{failure.details['sandboxes']} code sandboxes were busy "
                    "(LOOM_CODE_SANDBOXES)"
                )
        raise NodeError(message, error_type=failure.error_type, details=details) from None
    if result.console.lines or result.console.truncated:
        context.console = result.console
    return {"main": result.items}


def _sandbox(context: NodeRunContext) -> CodeSandbox:
    resources = context.resources
    if resources is not None and resources.code is not None:
        return resources.code
    return shared_sandbox()


def _timeout_s(context: NodeRunContext, sandbox: CodeSandbox) -> float:
    node_timeout_s = context.node.timeout_s
    if node_timeout_s is None:
        return sandbox.limits.timeout_s
    return max(0.001, node_timeout_s - min(TIMEOUT_MARGIN_S, node_timeout_s / 10))


def _worded(failure: CodeFailure) -> str:
    if failure.line is None:
        return failure.message
    where = f"line {failure.line}"
    if failure.column is not None:
        where += f", column {failure.column}"
    return f"{failure.message} ({where})"
