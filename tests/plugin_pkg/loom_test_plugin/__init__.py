"""A third-party node type package, as an outside author would write one.

It depends only on `engine.node_types`, the public plugin interface of Loom.
"""

from __future__ import annotations

from engine.node_types import NodeGroup, NodeType

GREET = NodeType(
    name="acme.greet",
    version=1,
    display_name="Greet",
    description="Adds a greeting to every item.",
    group=NodeGroup.ACTION,
    parameters_schema={
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "greeting": {
                "type": "string",
                "title": "Greeting",
                "description": "The text to add, for example 'Hello {{ $json.name }}'.",
            },
        },
        "required": ["greeting"],
        "additionalProperties": False,
    },
)


def node_types() -> list[NodeType]:
    """The node types this package provides."""
    return [GREET]
