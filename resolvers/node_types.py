"""Node type queries: what the editor's palette and forms show.

The catalog (every type mapped to its GraphQL form) is built once per change of the registry,
not per request: `nodeTypes` filters a list made already.

Over 400 lines, but one cohesive thing: the node type catalog as the schema shows it.
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Hashable
from typing import Annotated, Any

import strawberry
from graphql import DocumentNode, ExecutionResult, FieldNode, OperationDefinitionNode
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from engine.declarative import is_declarative
from engine.node_type_policy import PolicySnapshot
from engine.node_types import NodeType, NodeTypeLookup, WorkspaceNodeTypes
from engine.validation import Problem
from resolvers import mapping
from resolvers.context import Context
from resolvers.errors import RequestError
from resolvers.permissions import refusal
from resolvers.workflows import validation_error
from resolvers.workspace_types import workspace_node_types
from schema import results, types
from storage import accounts, audit, node_type_definitions
from storage import node_type_policies as policies_store
from storage.accounts import Principal
from storage.audit import AuditAction
from storage.models import SERVER_SCOPE
from storage.types import storable

Info = strawberry.Info[Context, None]

# Longer searches are refused: each word is looked for in every type's texts.
MAX_SEARCH_CHARS = 200

# Catalogs by the revision of what they were built from: a registry's (unique in the
# process) or a workspace's view's (the registry's and the stored versions of its
# declarative types). A view's catalog shares the registry catalog's entries: only the
# workspace's own types are mapped anew.
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


async def _seen(info: Info, workspace: str | None) -> NodeTypeLookup:
    """The registry, or with a workspace (the viewer's) also its declarative types."""
    if workspace is None:
        return info.context.services.registry
    return await workspace_node_types(info, workspace)


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
    include_disabled: Annotated[
        bool,
        strawberry.argument(
            description="Also the types disabled by policy (`enabled: false`, with why): an "
            "editor showing existing nodes wants them, a palette does not."
        ),
    ] = False,
    workspace_id: Annotated[
        strawberry.ID | None,
        strawberry.argument(
            description="Whether each type is enabled in this workspace of yours (its own "
            "policies besides the server's), and that workspace's declarative types "
            "(`ws.name`) besides the installed ones; without it, server-wide, installed types "
            "only."
        ),
    ] = None,
) -> list[types.NodeType]:
    viewer = info.context.viewer()
    if search is not None and len(search) > MAX_SEARCH_CHARS:
        raise RequestError(
            f"search is {len(search):,} characters long; at most {MAX_SEARCH_CHARS} are looked for",
            field="search",
        )
    workspace = _viewed_workspace(viewer, workspace_id)
    policy = info.context.services.node_type_policy()
    words = sorted(set(search.casefold().split())) if search else []
    wanted_category = category.casefold() if category else None
    found = []
    for node_type, searched in _catalog(await _seen(info, workspace)):
        if (
            (group is None or node_type.group is group)
            and (wanted_category is None or node_type.category.casefold() == wanted_category)
            and all(word in searched for word in words)
        ):
            seen = _as_seen(node_type, policy, workspace)
            if seen.enabled or include_disabled:
                found.append(seen)
    return found


def _viewed_workspace(viewer: Principal, workspace_id: strawberry.ID | None) -> str | None:
    """The workspace whose policies apply, which must be the viewer's."""
    if workspace_id is None:
        return None
    if str(workspace_id) not in viewer.workspace_ids:
        raise RequestError(
            f"workspace {str(workspace_id)[:64]!r} not found among yours", field="workspaceId"
        )
    return str(workspace_id)


def _as_seen(
    node_type: types.NodeType, policy: PolicySnapshot, workspace_id: str | None
) -> types.NodeType:
    """The catalog entry with `enabled` as `policy` has it for the workspace (a copy when
    disabled: the catalog's entries are shared)."""
    if policy.empty:
        return node_type
    why = policy.disabled(node_type.name, workspace_id)
    if why is None:
        return node_type
    return dataclasses.replace(node_type, enabled=False, disabled_reason=why.describe())


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
    info: Info,
    name: str,
    version: int | None = None,
    workspace_id: Annotated[
        strawberry.ID | None,
        strawberry.argument(
            description="Whether it is enabled in this workspace of yours, and that "
            "workspace's declarative types (`ws.name`) too; without it, server-wide, "
            "installed types only."
        ),
    ] = None,
) -> types.NodeType | None:
    viewer = info.context.viewer()
    workspace = _viewed_workspace(viewer, workspace_id)
    seen = await _seen(info, workspace)
    descriptor = seen.get(name, version)
    if descriptor is None:
        return None
    policy = info.context.services.node_type_policy()
    return _as_seen(mapping.node_type(descriptor, seen), policy, workspace)


# Policies


async def set_node_type_enabled(
    info: Info,
    name: Annotated[str, strawberry.argument(description="The node type's name.")],
    enabled: Annotated[bool, strawberry.argument(description="Enable (true) or disable it.")],
    workspace_id: Annotated[
        strawberry.ID | None,
        strawberry.argument(
            description="Only in this workspace (its owner or an admin may); without it, "
            "server-wide (admins only)."
        ),
    ] = None,
    reason: Annotated[
        str | None,
        strawberry.argument(
            description=f"Why, shown with the type and the issue of every node using it (at "
            f"most {policies_store.MAX_REASON_CHARS} characters)."
        ),
    ] = None,
) -> results.NodeTypeResult:
    viewer = info.context.viewer()
    services = info.context.services
    problems = []
    lookup: NodeTypeLookup = services.registry
    if (
        workspace_id is not None
        and is_declarative(name)
        and (viewer.is_admin or str(workspace_id) in viewer.workspace_ids)
        and storable(str(workspace_id))
    ):
        # A workspace's own declarative type can be disabled in that workspace.
        lookup = await workspace_node_types(info, str(workspace_id))
    descriptor = lookup.get(name) if len(name) <= 128 else None
    if descriptor is None:
        problems.append(
            Problem("UNKNOWN_NODE_TYPE", f"no node type is named {name[:128]!r}", field="name")
        )
    if reason is not None:
        reason = reason.strip() or None
    if reason is not None and (
        len(reason) > policies_store.MAX_REASON_CHARS or not storable(reason)
    ):
        problems.append(
            Problem(
                "INVALID_REASON",
                f"reason must be at most {policies_store.MAX_REASON_CHARS} printable "
                f"characters (it has {len(reason):,})",
                field="reason",
            )
        )
    setting = services.policies.setting if services.policies is not None else frozenset()
    if workspace_id is None and enabled and name in setting:
        problems.append(
            Problem(
                "DISABLED_BY_SETTING",
                f"{name!r} is disabled by the setting LOOM_DISABLED_NODE_TYPES, which only "
                "the server's operator can change",
                field="enabled",
            )
        )
    if services.policies is None:
        problems.append(Problem("POLICIES_UNAVAILABLE", "this server keeps no node type policies"))
    if problems:
        return validation_error(problems)
    assert descriptor is not None and services.policies is not None
    async with info.context.database.transaction() as session:
        if workspace_id is None:
            if not viewer.is_admin:
                return results.ForbiddenError(
                    message="only an admin may enable or disable node types server-wide; a "
                    "workspace's owner or admin may in that workspace (workspaceId)"
                )
            scope = SERVER_SCOPE
        else:
            scope = str(workspace_id)
            refused = await _may_set_in_workspace(info, session, viewer, scope)
            if refused is not None:
                return refused
        changed = await policies_store.set_enabled(
            session,
            scope=scope,
            node_type=name,
            enabled=enabled,
            reason=reason,
            user_id=viewer.user_id,
            user_name=viewer.user_name,
        )
        if changed:
            await audit.record(
                session,
                actor=viewer,
                action=AuditAction.NODE_TYPE_POLICY_CHANGE,
                workspace_id=None if workspace_id is None else scope,
                target_kind="node_type",
                target_id=name,
                details={"enabled": enabled, "reason": reason},
            )
    if changed:
        await services.policies.reload()
    policy = services.node_type_policy()
    workspace = None if workspace_id is None else str(workspace_id)
    return _as_seen(mapping.node_type(descriptor, lookup), policy, workspace)


async def _may_set_in_workspace(
    info: Info, session: Any, viewer: Principal, workspace_id: str
) -> results.NotFoundError | results.ForbiddenError | None:
    """Why the viewer may not change the workspace's policies, if they may not."""
    not_found = results.NotFoundError(
        message=f"workspace {workspace_id[:64]!r} not found", id=strawberry.ID(workspace_id[:64])
    )
    if not storable(workspace_id) or len(workspace_id) > 36:
        return not_found
    if viewer.is_admin:
        found = await accounts.workspaces_by_ids(session, [workspace_id])
        return None if found else not_found
    if workspace_id not in viewer.workspace_ids:
        return not_found
    return refusal(info, workspace_id)


MAX_CHANGES = 500


async def node_type_policy_changes(
    info: Info,
    workspace_id: Annotated[
        strawberry.ID | None,
        strawberry.argument(
            description="This workspace's changes (yours to see); without it, the server-wide "
            "ones (admins only: empty for others)."
        ),
    ] = None,
    first: Annotated[
        int, strawberry.argument(description=f"How many, newest first (at most {MAX_CHANGES}).")
    ] = 50,
) -> list[types.NodeTypePolicyChange]:
    viewer = info.context.viewer()
    if not 0 < first <= MAX_CHANGES:
        raise RequestError(f"first must be 1 to {MAX_CHANGES}", field="first")
    if workspace_id is None:
        if not viewer.is_admin:
            return []
        scope = SERVER_SCOPE
    else:
        scope = str(workspace_id)
        _viewed_workspace(viewer, workspace_id)
    async with info.context.database.session() as session:
        rows = await policies_store.changes(session, [scope], first)
    return [
        types.NodeTypePolicyChange(
            id=strawberry.ID(str(row.id)),
            node_type=row.node_type,
            scope=(
                types.NodeTypePolicyScope.SERVER
                if row.scope == SERVER_SCOPE
                else types.NodeTypePolicyScope.WORKSPACE
            ),
            workspace_id=None if row.scope == SERVER_SCOPE else strawberry.ID(row.scope),
            enabled=row.enabled,
            reason=row.reason,
            changed_by=row.changed_by,
            changed_at=row.changed_at,
        )
        for row in rows
    ]


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
    executed, and refused, as always). What else the answer depends on is in the key: the
    node type policies (the snapshot in force), and, for a
    query naming a workspace (`workspaceId`), the workspaces the caller may see (a cached
    answer is never given to a caller the resolver would have refused) and the stored
    versions of their declarative types (one indexed read: a type created, updated or deleted
    shows in the next query).
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
        services = context.services
        policy = services.node_type_policy()
        viewer = context.principal.workspace_ids if "workspaceId" in query else None
        declared: tuple[str, ...] = ()
        if viewer is not None:
            async with context.database.session() as session:
                declared = tuple(await node_type_definitions.version_ids(session, viewer))
        return (
            services.registry.revision,
            policy.key,
            viewer,
            declared,
            query,
            execution.operation_name,
            variables,
        )


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
