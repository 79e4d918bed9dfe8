"""The webhook trigger and the node that answers its request.

`webhook` starts a run of the published version of an active workflow when a request comes
to `/webhook/{path}` (server/webhooks.py); the request is its one item. `respond_to_webhook`
sets the answer when the trigger's response mode is `respond_node`.
"""

from __future__ import annotations

import uuid
from typing import Any

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
