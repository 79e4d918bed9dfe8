"""The webhook trigger and the node that answers its request.

`webhook` starts a run of the published version of an active workflow when a request comes
to `/webhook/{path}` (server/webhooks.py); the request is its one item. `respond_to_webhook`
sets the answer when the trigger's response mode is `respond_node`.
"""

from __future__ import annotations

import uuid
from typing import Any

from engine.node_catalog import CORE, Catalog, ParameterHint, Widget
from engine.node_types import NodeGroup, NodeType
from engine.nodes import schema
from engine.nodes.base import NodeError, NodeRunContext, PortItems

WEBHOOK = "webhook"
RESPOND = "respond_to_webhook"
RESPONSE_MODES = ("immediately", "last_node", "respond_node")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_NAMESPACE = uuid.UUID("6f1d3c4e-2b7a-4c55-9d0e-8a1b2c3d4e5f")


def webhook_path(workflow_id: str, node_id: str, parameters: dict[str, Any]) -> str:
    """The node's path: the one it sets, or a UUID of its own (stable for the node)."""
    path = str(parameters.get("path") or "").strip().strip("/")
    return path or str(uuid.uuid5(_NAMESPACE, f"{workflow_id}/{node_id}"))


def webhook_methods(parameters: dict[str, Any]) -> list[str]:
    methods = parameters.get("methods") or ["POST"]
    return sorted({str(method).upper() for method in methods})


async def webhook(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    """Passes on the request, which the executor hands over as its one item."""
    return {"main": list(inputs.get("main", []))}


async def respond_to_webhook(ctx: NodeRunContext, inputs: PortItems) -> PortItems:
    """The answer to the request: status, headers and body (rendered for the first item)."""
    items = list(inputs.get("main", []))
    parameters = ctx.parameters(items[0] if items else None, 0)
    status = parameters.get("status", 200)
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise NodeError(
            "status must be a whole number from 100 to 599",
            error_type="INVALID_PARAMETER",
            details={"parameter": "status"},
        )
    headers = {
        str(entry["name"]): str(entry.get("value", ""))
        for entry in parameters.get("headers") or []
        if isinstance(entry, dict) and entry.get("name")
    }
    body = parameters.get("body", items)
    return {"main": [{"status": status, "headers": headers, "body": body}]}


def webhook_type() -> NodeType:
    return NodeType(
        name=WEBHOOK,
        version=1,
        display_name="Webhook",
        description="Starts the workflow (its published version, while active) when a request "
        "comes to /webhook/{path}; the request is the item: body, query, headers, method, path.",
        group=NodeGroup.TRIGGER,
        inputs=(),
        credential_kinds=("api_key_header", "basic_auth"),
        parameters_schema=schema.parameters(
            {
                "path": schema.text(
                    "Path",
                    "The path after /webhook/; a UUID of this node's own when left empty.",
                    pattern=r"^[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*$",
                    maxLength=200,
                ),
                "methods": schema.list_of(
                    "Methods",
                    "The HTTP methods it answers.",
                    {"type": "string", "enum": list(METHODS)},
                    min_items=1,
                    uniqueItems=True,
                    default=["POST"],
                ),
                "responseMode": schema.choice(
                    "Respond",
                    "immediately: 202 with the execution id. last_node: when the run ends, with "
                    "the items of the last node that produced data. respond_node: with what a "
                    "Respond to Webhook node says.",
                    RESPONSE_MODES,
                    default="immediately",
                ),
                "maxBodyBytes": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 16 * 1024 * 1024,
                    "default": 1024 * 1024,
                    "title": "Largest body",
                    "description": "Bytes; a larger request gets 413.",
                },
            }
        ),
        catalog=Catalog(
            category=CORE,
            subcategory="Triggers",
            icon="fa:bolt",
            documentation_url="docs/api.md#webhooks",
            subtitle="{path}",
            hints=(
                ParameterHint("path", placeholder="orders/new"),
                ParameterHint("methods"),
                ParameterHint("responseMode"),
            ),
        ),
        execute=webhook,
    )


def respond_to_webhook_type() -> NodeType:
    pair = schema.object_of(
        {
            "name": schema.text("Name", "Header name."),
            "value": schema.any_value("Value", "Header value."),
        },
        required=("name",),
    )
    return NodeType(
        name=RESPOND,
        version=1,
        display_name="Respond to Webhook",
        description="Answers the request that started the run (Webhook trigger in "
        "respond_node mode).",
        group=NodeGroup.FLOW,
        parameters_schema=schema.parameters(
            {
                "status": schema.number_or_expression(
                    "Status", "HTTP status, 100-599.", integer=True, minimum=100, default=200
                ),
                "headers": schema.list_of("Headers", "Response headers.", pair, maxItems=50),
                "body": schema.any_value(
                    "Body", "What to send as JSON; the incoming items when left out."
                ),
            }
        ),
        catalog=Catalog(
            category=CORE,
            subcategory="Flow",
            icon="fa:reply",
            documentation_url="docs/api.md#webhooks",
            hints=(
                ParameterHint("status"),
                ParameterHint("headers"),
                ParameterHint("body", widget=Widget.JSON),
            ),
        ),
        execute=respond_to_webhook,
    )
