"""Node type queries: what the editor's palette shows."""

from __future__ import annotations

import strawberry

from resolvers import mapping
from resolvers.context import Context
from schema import types

Info = strawberry.Info[Context, None]


def node_types(info: Info) -> list[types.NodeType]:
    info.context.viewer()
    registry = info.context.services.registry
    return [mapping.node_type(descriptor, registry) for descriptor in registry.latest()]


def node_type(info: Info, name: str, version: int | None = None) -> types.NodeType | None:
    info.context.viewer()
    registry = info.context.services.registry
    descriptor = registry.get(name, version)
    return None if descriptor is None else mapping.node_type(descriptor, registry)
