"""The node types a workspace sees: the process's registry plus the workspace's declarative
types (storage/node_type_definitions.py), for every check of one of its workflows and for
its catalog."""

from __future__ import annotations

import strawberry
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.declarative import is_declarative
from engine.graph import Graph
from engine.node_types import NodeTypeLookup
from resolvers.context import Context
from storage.node_type_definitions import DeclaredNodeTypes

Info = strawberry.Info[Context, None]


async def workspace_node_types(
    info: Info, workspace_id: str, session: AsyncSession | None = None
) -> NodeTypeLookup:
    """The registry plus the workspace's declarative types (read in `session` when the
    caller holds one, so that a request never holds two connections)."""
    services = info.context.services
    declared = DeclaredNodeTypes(services.database, services.registry)
    return await declared.for_workspace(workspace_id, session)


async def node_types_for_graph(
    info: Info, workspace_id: str, graph: Graph, session: AsyncSession | None = None
) -> NodeTypeLookup:
    """What to check a workflow of the workspace with: its view when a node uses one of its
    declarative types, else the registry alone (no query)."""
    if any(is_declarative(node.type) for node in graph.nodes):
        return await workspace_node_types(info, workspace_id, session)
    return info.context.services.registry
