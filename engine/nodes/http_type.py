"""The HTTP Request node type's descriptor. Its behaviour (`engine.nodes.http`) is imported
with aiohttp when such a node first runs: a process that sends no request never loads them."""

from __future__ import annotations

from engine.credentials import KINDS
from engine.node_catalog import CORE, Catalog, ParameterHint, Widget
from engine.node_types import NodeGroup, NodeType
from engine.nodes import schema
from engine.nodes.base import NodeRunContext, PortItems


async def _send_http_request(context: NodeRunContext, inputs: PortItems) -> PortItems:
    """The HTTP Request node's behaviour, imported with aiohttp when a node first runs."""
    from engine.nodes.http import http_request

    return await http_request(context, inputs)


def http_request_type() -> NodeType:
    pair = schema.object_of(
        {
            "name": schema.text("Name", "The name."),
            "value": schema.any_value("Value", "The value, or an expression."),
        },
        required=("name",),
    )
    return NodeType(
        name="http_request",
        version=1,
        display_name="HTTP Request",
        description="Sends an HTTP request for each item and outputs the response. Private "
        "and local addresses are refused unless the server allows them.",
        group=NodeGroup.ACTION,
        credential_kinds=tuple(sorted(KINDS)),
        parameters_schema=schema.parameters(
            {
                "method": schema.choice(
                    "Method",
                    "The HTTP method.",
                    ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"),
                    default="GET",
                ),
                "url": schema.text(
                    "URL", "http or https URL, or an expression.", minLength=1, maxLength=8192
                ),
                "query": schema.list_of("Query", "Query string parameters.", pair, maxItems=100),
                "headers": schema.list_of("Headers", "Request headers.", pair, maxItems=100),
                "bodyType": schema.choice(
                    "Body",
                    "What to send as the body.",
                    ("none", "json", "form", "text"),
                    default="none",
                ),
                "jsonBody": schema.any_value("JSON body", "For a json body: the JSON to send."),
                "formBody": schema.list_of(
                    "Form body", "For a form body: its fields.", pair, maxItems=100
                ),
                "textBody": schema.text("Text body", "For a text body: the text to send."),
                "timeoutSeconds": schema.number_or_expression(
                    "Timeout",
                    "Seconds for the whole exchange.",
                    integer=False,
                    minimum=0.1,
                    default=30,
                ),
                "maxRedirects": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 5,
                    "default": 5,
                    "title": "Redirects",
                    "description": "Redirects followed at most.",
                },
                "responseFormat": schema.choice(
                    "Response format",
                    "auto: JSON when the response says so, text otherwise.",
                    ("auto", "json", "text"),
                    default="auto",
                ),
                "fullResponse": schema.flag(
                    "Full response",
                    "Output status, headers and body, not only the body.",
                    default=False,
                ),
                "splitArray": schema.flag(
                    "Split into items",
                    "A JSON array response becomes one item per element.",
                    default=False,
                ),
                "maxResponseBytes": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 100 * 1024 * 1024,
                    "default": 10 * 1024 * 1024,
                    "title": "Largest response",
                    "description": "Bytes; a larger response fails the node.",
                },
                "retry": schema.object_of(
                    {
                        "maxAttempts": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 10,
                            "default": 3,
                            "title": "Attempts",
                            "description": "Tries in all, for connection errors, 429 and 5xx.",
                        },
                        "backoffSeconds": {
                            "type": "number",
                            "minimum": 0,
                            "maximum": 60,
                            "default": 1,
                            "title": "Backoff",
                            "description": "First wait (Retry-After wins).",
                        },
                    },
                    title="Retries",
                    description="Retries of this request; Retry-After is honoured.",
                ),
            },
            required=("url",),
        ),
        catalog=Catalog(
            category=CORE,
            subcategory="Helpers",
            icon="fa:globe",
            documentation_url="docs/api.md#the-http-request-node",
            subtitle="{method} {url}",
            hints=(
                ParameterHint("method"),
                ParameterHint("url", placeholder="https://api.example.com/items"),
                ParameterHint("query"),
                ParameterHint("headers"),
                ParameterHint("bodyType"),
                ParameterHint("jsonBody", widget=Widget.JSON, show_when={"bodyType": ("json",)}),
                ParameterHint("formBody", show_when={"bodyType": ("form",)}),
                ParameterHint(
                    "textBody", widget=Widget.MULTILINE, show_when={"bodyType": ("text",)}
                ),
            ),
        ),
        execute=_send_http_request,
    )
