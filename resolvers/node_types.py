"""Node type queries: what the editor's palette and forms show.

The catalog (every type mapped to its GraphQL form) is built once per change of the registry,
not per request: `nodeTypes` filters a list made already.
"""

from __future__ import annotations

import weakref
from typing import Annotated

import strawberry

from engine.node_types import NodeTypeRegistry
from resolvers import mapping
from resolvers.context import Context
from schema import types

Info = strawberry.Info[Context, None]

_catalogs: weakref.WeakKeyDictionary[
    NodeTypeRegistry, tuple[int, list[tuple[types.NodeType, str]]]
] = weakref.WeakKeyDictionary()


def _catalog(registry: NodeTypeRegistry) -> list[tuple[types.NodeType, str]]:
    """The latest version of every type, sorted by name, each with the text a search looks
    in (lower case): built again only when the registry changed."""
    known = _catalogs.get(registry)
    if known is not None and known[0] == registry.revision:
        return known[1]
    catalog = []
    for descriptor in registry.latest():
        mapped = mapping.node_type(descriptor, registry)
        searched = " ".join(
            (
                descriptor.name,
                descriptor.display_name,
                descriptor.description,
                descriptor.catalog.category,
                descriptor.catalog.subcategory,
            )
        ).casefold()
        catalog.append((mapped, searched))
    _catalogs[registry] = (registry.revision, catalog)
    return catalog


def node_types(
    info: Info,
    search: Annotated[
        str | None,
        strawberry.argument(description="Words the type's texts must all hold (any case)."),
    ] = None,
    group: Annotated[
        types.NodeGroup | None, strawberry.argument(description="Only this palette group.")
    ] = None,
    category: Annotated[
        str | None, strawberry.argument(description="Only this category (any case).")
    ] = None,
) -> list[types.NodeType]:
    info.context.viewer()
    words = search.casefold().split() if search else []
    wanted_category = category.casefold() if category else None
    return [
        node_type
        for node_type, searched in _catalog(info.context.services.registry)
        if (group is None or node_type.group is group)
        and (wanted_category is None or node_type.category.casefold() == wanted_category)
        and all(word in searched for word in words)
    ]


def node_type(info: Info, name: str, version: int | None = None) -> types.NodeType | None:
    info.context.viewer()
    registry = info.context.services.registry
    descriptor = registry.get(name, version)
    return None if descriptor is None else mapping.node_type(descriptor, registry)
