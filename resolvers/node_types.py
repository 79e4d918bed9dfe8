"""Node type queries: what the editor's palette and forms show.

The catalog (every type mapped to its GraphQL form) is built once per change of the registry,
not per request: `nodeTypes` filters a list made already.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Hashable
from typing import Annotated, Any

import strawberry
from graphql import DocumentNode, ExecutionResult, FieldNode, OperationDefinitionNode
from sqlmodel.ext.asyncio.session import AsyncSession
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from engine.declarative import is_declarative
from engine.graph import Graph
from engine.node_types import NodeType, NodeTypeLookup, WorkspaceNodeTypes
from resolvers import mapping
from resolvers.context import Context
from resolvers.errors import RequestError
from schema import types
from storage import node_type_definitions
from storage.node_type_definitions import DeclaredNodeTypes

Info = strawberry.Info[Context, None]

# Longer searches are refused: each word is looked for in every type's texts.
MAX_SEARCH_CHARS = 200

# Catalogs by the revision of what they were built from: a registry's (unique in the
# process) or a workspace's view's (the registry's and the stored versions of its types). A
# view's catalog shares the registry catalog's entries: only its own types are mapped anew.
_catalogs: OrderedDict[Hashable, list[tuple[types.NodeType, str]]] = OrderedDict()
_CATALOGS_KEPT = 64


def _catalog(node_types: NodeTypeLookup) -> list[tuple[types.NodeType, str]]:
    """The latest version of every type, sorted by name, each with the text a search looks
    in (lower case): built again only when the types changed."""
    known = _catalogs.get(node_types.revision)
    if known is not None:
        _catalogs.move_to_end(node_types.revision)
        return known
    if isinstance(node_types, WorkspaceNodeTypes):
        own = [_entry(descriptor, node_types) for descriptor in node_types.declared_latest()]
        catalog = sorted([*_catalog(node_types.registry), *own], key=lambda entry: entry[0].name)
    else:
        catalog = [_entry(descriptor, node_types) for descriptor in node_types.latest()]
    _catalogs[node_types.revision] = catalog
    while len(_catalogs) > _CATALOGS_KEPT:
        _catalogs.popitem(last=False)
    return catalog


def _entry(descriptor: NodeType, node_types: NodeTypeLookup) -> tuple[types.NodeType, str]:
    searched = " ".join(
        (
            descriptor.name,
            descriptor.display_name,
            descriptor.description,
            descriptor.catalog.category,
            descriptor.catalog.subcategory,
        )
    ).casefold()
    return mapping.node_type(descriptor, node_types), searched


async def workspace_node_types(
    info: Info, workspace_id: str, session: AsyncSession | None = None
) -> NodeTypeLookup:
    """The node types a workspace sees: the registry plus its declarative types (read in
    `session` when the caller holds one, so that a request never holds two connections)."""
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


WorkspaceArgument = Annotated[
    strawberry.ID | None,
    strawberry.argument(
        description="Also that workspace's declarative types (`ws.name`); without it, the "
        "installed types only."
    ),
]


async def _seen(info: Info, workspace_id: strawberry.ID | None) -> NodeTypeLookup:
    """The registry, or with `workspace_id` the view of that workspace of the viewer's."""
    viewer = info.context.viewer()
    if workspace_id is None:
        return info.context.services.registry
    if str(workspace_id) not in viewer.workspace_ids:
        raise RequestError(f"workspace {str(workspace_id)!r} not found", field="workspaceId")
    return await workspace_node_types(info, str(workspace_id))


async def node_types(
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
    workspace_id: WorkspaceArgument = None,
) -> list[types.NodeType]:
    seen = await _seen(info, workspace_id)
    if search is not None and len(search) > MAX_SEARCH_CHARS:
        raise RequestError(
            f"search is {len(search):,} characters long; at most {MAX_SEARCH_CHARS} are looked for",
            field="search",
        )
    words = sorted(set(search.casefold().split())) if search else []
    wanted_category = category.casefold() if category else None
    return [
        node_type
        for node_type, searched in _catalog(seen)
        if (group is None or node_type.group is group)
        and (wanted_category is None or node_type.category.casefold() == wanted_category)
        and all(word in searched for word in words)
    ]


def node_type_packages(info: Info) -> list[types.NodeTypePackage]:
    """The entry points the registry was loaded from; an admin's to see (their errors name
    modules and paths of the server)."""
    if not info.context.viewer().is_admin:
        return []
    return [
        types.NodeTypePackage(
            entry_point=package.entry_point,
            distribution=package.distribution,
            version=package.version,
            node_types=[
                types.NodeTypeVersionRef(name=name, version=version)
                for name, version in package.node_types
            ],
            error=package.error,
        )
        for package in info.context.services.registry.packages
    ]


async def node_type(
    info: Info, name: str, version: int | None = None, workspace_id: WorkspaceArgument = None
) -> types.NodeType | None:
    seen = await _seen(info, workspace_id)
    descriptor = seen.get(name, version)
    return None if descriptor is None else mapping.node_type(descriptor, seen)


# Root fields whose results depend on the registry alone: an operation made of nothing else
# is answered from the last identical one while the registry is unchanged.
_REGISTRY_FIELDS = frozenset({"nodeTypes", "nodeType", "__typename"})
_RESULTS_KEPT = 32
# Operations kept are small and plain: a query of at most this many characters, variables of
# at most this many once encoded, and at most this many root fields (aliases would multiply
# the catalog kept per entry).
_QUERY_CHARS_KEPT = 10_000
_VARIABLES_CHARS_KEPT = 1_000
_ROOT_FIELDS_KEPT = 3
_results: OrderedDict[tuple[Any, ...], ExecutionResult] = OrderedDict()


class NodeTypeResults(SchemaExtension):
    """Answers a repeated catalog query without executing it again.

    Resolving 500 node types with every field costs graphql-core about 90 ms (bench/
    node_catalog.py) for an answer that changes only when the registry does, and editors ask
    it on every load. An authenticated query whose root fields are only `nodeTypes`,
    `nodeType` and `__typename` takes the result of the last execution of the same document,
    operation and variables under the same registry revision (an unauthenticated one is
    executed, and refused, as always). An operation that asks for a workspace's types
    (a `workspaceId` argument) depends on the caller too: its key adds the caller's
    workspaces and the stored versions of their declarative types (one indexed read), so a
    type created, updated or deleted is seen by the next query, and a caller never gets
    another's answer. Whatever else node types come to depend on (policies) must be in the
    key as well.
    """

    async def on_execute(self) -> AsyncIterator[None]:
        key = await self._key()
        if key is None:
            yield
            return
        cached = _results.get(key)
        if cached is not None:
            _results.move_to_end(key)
            self.execution_context.result = cached
        yield
        result = self.execution_context.result
        if cached is None and isinstance(result, ExecutionResult) and not result.errors:
            _results[key] = result
            while len(_results) > _RESULTS_KEPT:
                _results.popitem(last=False)

    async def _key(self) -> tuple[Any, ...] | None:
        execution = self.execution_context
        context = execution.context
        query = execution.query
        if getattr(context, "principal", None) is None or not query:
            return None
        if len(query) > _QUERY_CHARS_KEPT or execution.operation_type is not OperationType.QUERY:
            return None
        operation = _operation(execution.graphql_document, execution.operation_name)
        if operation is None or len(operation.selection_set.selections) > _ROOT_FIELDS_KEPT:
            return None
        if not all(
            isinstance(selection, FieldNode) and selection.name.value in _REGISTRY_FIELDS
            for selection in operation.selection_set.selections
        ):
            return None
        try:
            variables = json.dumps(execution.variables or {}, sort_keys=True)
        except (TypeError, ValueError):
            return None
        if len(variables) > _VARIABLES_CHARS_KEPT:
            return None
        registry = context.services.registry
        key: tuple[Any, ...] = (registry.revision, query, execution.operation_name, variables)
        if any(
            argument.name.value == "workspaceId"
            for selection in operation.selection_set.selections
            if isinstance(selection, FieldNode)
            for argument in selection.arguments or ()
        ):
            workspace_ids = context.principal.workspace_ids
            async with context.database.session() as session:
                stored = await node_type_definitions.version_ids(session, workspace_ids)
            key += (workspace_ids, tuple(stored))
        return key


def _operation(document: DocumentNode | None, name: str | None) -> OperationDefinitionNode | None:
    if document is None:
        return None
    operations = [
        definition
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode)
    ]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((op for op in operations if op.name is not None and op.name.value == name), None)
