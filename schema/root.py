"""The root types and the `Schema` object, wiring the resolvers into the types."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from resolvers import accounts as account_resolvers
from resolvers import node_types as node_type_resolvers
from resolvers import workflows as workflow_resolvers
from schema import results, types
from schema.extensions import ErrorPolicy, log_unexpected


@strawberry.type(description="Read access to everything the viewer may see.")
class Query:
    viewer: types.User = strawberry.field(
        resolver=account_resolvers.viewer, description="The authenticated user."
    )
    workflows: types.WorkflowConnection = strawberry.field(
        resolver=workflow_resolvers.workflows_page,
        description="The viewer's workflows, newest first (Relay connection).",
    )
    workflow: types.Workflow | None = strawberry.field(
        resolver=workflow_resolvers.workflow,
        description="One workflow; null if missing or not yours.",
    )
    workflow_version: types.WorkflowVersion | None = strawberry.field(
        resolver=workflow_resolvers.workflow_version,
        description="One immutable snapshot of a workflow; null if missing or not yours.",
    )
    node_types: list[types.NodeType] = strawberry.field(
        resolver=node_type_resolvers.node_types,
        description="Every installed node type, latest version of each, sorted by name.",
    )
    node_type: types.NodeType | None = strawberry.field(
        resolver=node_type_resolvers.node_type,
        description="One node type by name (and version; the latest when omitted).",
    )
    users: list[types.User] = strawberry.field(
        resolver=account_resolvers.users, description="Every user (admins only; empty for others)."
    )
    api_tokens: list[types.ApiToken] = strawberry.field(
        resolver=account_resolvers.api_tokens, description="The viewer's API tokens, newest first."
    )


@strawberry.type(description="Changes. Expected failures are union results, not errors.")
class Mutation:
    create_workflow: results.WorkflowResult = strawberry.mutation(
        resolver=workflow_resolvers.create_workflow, description="Create a workflow (version 1)."
    )
    update_workflow: results.WorkflowResult = strawberry.mutation(
        resolver=workflow_resolvers.update_workflow,
        description="Replace a workflow's draft; `expectedVersion` must be the current version.",
    )
    delete_workflow: results.DeleteResult = strawberry.mutation(
        resolver=workflow_resolvers.delete_workflow,
        description="Delete a workflow and its versions.",
    )
    duplicate_workflow: results.WorkflowResult = strawberry.mutation(
        resolver=workflow_resolvers.duplicate_workflow,
        description="Copy a workflow's draft into a new, unpublished workflow.",
    )
    add_node: results.WorkflowResult = strawberry.mutation(
        resolver=workflow_resolvers.add_node, description="Add a node to the draft."
    )
    update_node: results.WorkflowResult = strawberry.mutation(
        resolver=workflow_resolvers.update_node, description="Replace one node of the draft."
    )
    remove_node: results.WorkflowResult = strawberry.mutation(
        resolver=workflow_resolvers.remove_node, description="Remove a node and its edges."
    )
    add_edge: results.WorkflowResult = strawberry.mutation(
        resolver=workflow_resolvers.add_edge, description="Connect two nodes."
    )
    remove_edge: results.WorkflowResult = strawberry.mutation(
        resolver=workflow_resolvers.remove_edge, description="Remove one connection."
    )
    publish_workflow: results.WorkflowResult = strawberry.mutation(
        resolver=workflow_resolvers.publish_workflow,
        description="Snapshot the draft at `expectedVersion` and make it what triggers run.",
    )
    set_workflow_active: results.WorkflowResult = strawberry.mutation(
        resolver=workflow_resolvers.set_workflow_active,
        description="Switch the published version's triggers on or off; no version changes.",
    )
    create_user: results.TokenResult = strawberry.mutation(
        resolver=account_resolvers.create_user,
        description="Create a user and a first token (admins only).",
    )
    create_api_token: results.TokenResult = strawberry.mutation(
        resolver=account_resolvers.create_api_token,
        description="Create a token for yourself (or, as admin, for `userId`).",
    )
    revoke_api_token: results.RevokeTokenResult = strawberry.mutation(
        resolver=account_resolvers.revoke_api_token,
        description="Revoke a token of yours (admins: anyone's).",
    )


class LoomSchema(strawberry.Schema):
    """Logs only unexpected errors, with the request id that the client is shown."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_unexpected(errors, execution_context.context if execution_context else None)


def build_schema(
    *, max_depth: int = 12, max_tokens: int = 5000, max_aliases: int = 30
) -> LoomSchema:
    """The schema with Loom's limits, caches and error policy."""
    # Factories, not instances: Strawberry builds fresh extensions per request. The parser
    # and validation caches live at module level, so they are shared all the same.
    extensions: list[Any] = [
        ErrorPolicy,
        lambda: MaxTokensLimiter(max_token_count=max_tokens),
        lambda: ParserCache(maxsize=1000),
        lambda: ValidationCache(maxsize=1000),
        lambda: QueryDepthLimiter(max_depth=max_depth),
        lambda: MaxAliasesLimiter(max_alias_count=max_aliases),
    ]
    return LoomSchema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        config=StrawberryConfig(disable_field_suggestions=True),
    )
