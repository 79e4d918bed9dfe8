"""The root types and the `Schema` object, wiring the resolvers into the types."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterable
from operator import attrgetter
from typing import Any

import strawberry
from graphql import ASTValidationRule, GraphQLError, GraphQLObjectType
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as alias_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.scalars import JSON
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from resolvers import accounts as account_resolvers
from resolvers import audit as audit_resolvers
from resolvers import credentials as credential_resolvers
from resolvers import declarative_types as declarative_type_resolvers
from resolvers import executions as execution_resolvers
from resolvers import moves as move_resolvers
from resolvers import node_types as node_type_resolvers
from resolvers import previews as preview_resolvers
from resolvers import subscriptions as subscription_resolvers
from resolvers import system_status as status_resolvers
from resolvers import workflow_documents as document_resolvers
from resolvers import workflows as workflow_resolvers
from resolvers import workspaces as workspace_resolvers
from schema import audit_types, execution_types, json_scalar, results, status_types, types
from schema.extensions import CachedParse, ErrorPolicy, log_unexpected
from schema.operations import SpecOperationChoice
from schema.sharing import SharedEventResults


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
    export_workflow: results.ExportWorkflowResult = strawberry.field(
        resolver=document_resolvers.export_workflow,
        description="A workflow as one JSON document, to import elsewhere with "
        "`importWorkflow`: its draft, or with `version` that snapshot. Credentials are named "
        "by kind and name, never by id, and never with their secrets.",
    )
    node_types: list[types.NodeType] = strawberry.field(
        resolver=node_type_resolvers.node_types,
        description="Every installed node type (and with `workspaceId` that workspace's "
        "declarative types), latest version of each, sorted by name; "
        "`search` keeps those whose name, display name, description, category or subcategory "
        "hold every word of it (any case), `group` and `category` those of that palette group "
        "or category. Types disabled by policy (server-wide, or in `workspaceId`) are left "
        "out unless `includeDisabled`.",
    )
    node_type_packages: list[types.NodeTypePackage] = strawberry.field(
        resolver=node_type_resolvers.node_type_packages,
        description="The installed packages that provide node types (entry points of "
        "`loom.node_types`), with the types each gave or why it was skipped; empty unless "
        "the viewer is an admin.",
    )
    node_type: types.NodeType | None = strawberry.field(
        resolver=node_type_resolvers.node_type,
        description="One node type by name (and version; the latest when omitted), enabled or "
        "not; a workspace's declarative type only with that `workspaceId`.",
    )
    node_type_policy_changes: list[types.NodeTypePolicyChange] = strawberry.field(
        resolver=node_type_resolvers.node_type_policy_changes,
        description="Who enabled or disabled which node type when, and why, newest first.",
    )
    executions: execution_types.ExecutionConnection = strawberry.field(
        resolver=execution_resolvers.executions_page,
        description="The viewer's executions, newest first, optionally of one workflow or "
        "status (Relay connection).",
    )
    execution: execution_types.Execution | None = strawberry.field(
        resolver=execution_resolvers.execution,
        description="One execution; null if missing or not yours.",
    )
    evaluate_expression: results.ExpressionPreviewResult = strawberry.field(
        resolver=preview_resolvers.evaluate_expression,
        description="The value a parameter's text would have for one input item of a node, "
        "evaluated as the run would (same sandbox, same limits) against the data of a manual "
        'execution (`executionId`, default the latest): `$json`, `$input`, `$("Node")`, '
        "`$execution`, `$workflow`. A failure is an ExpressionError with the run's error "
        "code and its position in the text; NoDataError when there is no data to use yet.",
    )
    evaluate_parameters: results.ExpressionPreviewResult = strawberry.field(
        resolver=preview_resolvers.evaluate_parameters,
        description="A node's whole parameters as the run would render them for one input "
        "item (see `evaluateExpression`); a failure names the parameter.",
    )
    credentials: list[types.Credential] = strawberry.field(
        resolver=credential_resolvers.credentials_list,
        description="The credentials of your workspaces, by name (secrets never shown).",
    )
    credential_kinds: list[types.CredentialKind] = strawberry.field(
        resolver=credential_resolvers.credential_kinds,
        description="Every kind of credential, with the JSON Schema of its fields.",
    )
    users: list[types.User] = strawberry.field(
        resolver=account_resolvers.users, description="Every user (admins only; empty for others)."
    )
    workspaces: list[types.Workspace] = strawberry.field(
        resolver=workspace_resolvers.workspaces_list,
        description="The workspaces you belong to (a scoped token: its one workspace), by name.",
    )
    workspace: types.Workspace | None = strawberry.field(
        resolver=workspace_resolvers.workspace,
        description="A workspace you belong to, with its members; null for any other.",
    )
    api_tokens: list[types.ApiToken] = strawberry.field(
        resolver=account_resolvers.api_tokens, description="The viewer's API tokens, newest first."
    )
    audit_log: audit_types.AuditLogResult = strawberry.field(
        resolver=audit_resolvers.audit_log,
        description="Who changed what, when, newest first (Relay connection): a workspace's "
        "records for its owners and admins, or without `workspaceId` every record for server "
        "admins; `actor` and `action` keep one user's or one action's records. An unknown "
        "action is a BAD_USER_INPUT error naming `action`.",
    )
    system_status: status_types.SystemStatusResult = strawberry.field(
        resolver=status_resolvers.system_status_of,
        description="The whole system: processes alive (by their heartbeats), executions "
        "queued, running and waiting, the database's size, the last prune. Admins only; "
        "anyone else gets ForbiddenError.",
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
    import_workflow: results.ImportWorkflowResult = strawberry.mutation(
        resolver=document_resolvers.import_workflow,
        description="Create a workflow (an unpublished draft, version 1) from a document of "
        "`exportWorkflow`, in `workspaceId` (default: your personal workspace). A malformed "
        "document, a graph that cannot be saved or a newer format version is refused with "
        "every problem at once; node types not installed and credentials the workspace has "
        "no credential of that name and kind for become node issues of the new draft.",
    )
    delete_workflow: results.DeleteResult = strawberry.mutation(
        resolver=workflow_resolvers.delete_workflow,
        description="Delete a workflow and its versions.",
    )
    move_workflow: results.WorkflowResult = strawberry.mutation(
        resolver=move_resolvers.move_workflow,
        description="Move a workflow, with its versions, executions, webhooks, schedules and "
        "pinned data, to another workspace (editing rights in both). Refused with every "
        "problem at once when it would use what the target cannot: credentials, called "
        "workflows, callers left behind, declarative node types.",
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
    upgrade_node: results.WorkflowResult = strawberry.mutation(
        resolver=workflow_resolvers.upgrade_node,
        description="Move one node of the draft to a newer version of its type, its "
        "parameters carried over by the type's migrations; every parameter they cannot carry "
        "over comes back as a MIGRATION_FAILED problem and nothing is saved.",
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
    pin_node_data: results.WorkflowResult = strawberry.mutation(
        resolver=workflow_resolvers.pin_node_data,
        description="Pin `items` (a list of JSON objects) as the node's output on the draft at "
        "`expectedVersion`, replacing what it pinned: manual executions give them as its "
        "output without running it (its node run's `source` is PINNED); webhook, schedule, "
        "retry and sub-workflow executions ignore pins. A draft change like any other: the "
        "version moves on. Refused: a node that does not exist (NODE_NOT_FOUND), items that "
        "are not JSON objects (INVALID_ITEMS), pins of the workflow over the size limit "
        "(PINS_TOO_LARGE).",
    )
    unpin_node_data: results.WorkflowResult = strawberry.mutation(
        resolver=workflow_resolvers.unpin_node_data,
        description="Remove the node's pinned items from the draft at `expectedVersion`: "
        "manual executions run it again. NOT_PINNED when it pins nothing.",
    )
    publish_workflow: results.WorkflowResult = strawberry.mutation(
        resolver=workflow_resolvers.publish_workflow,
        description="Snapshot the draft at `expectedVersion` and make it what triggers run.",
    )
    set_workflow_active: results.WorkflowResult = strawberry.mutation(
        resolver=workflow_resolvers.set_workflow_active,
        description="Switch the published version's triggers on or off; no version changes.",
    )
    set_node_type_enabled: results.NodeTypeResult = strawberry.mutation(
        resolver=node_type_resolvers.set_node_type_enabled,
        description="Enable or disable a node type server-wide (admins) or in one workspace "
        "(its owner, or an admin). Workflows using a disabled type cannot be published, "
        "activated or started (NODE_TYPE_DISABLED); executions already running finish; "
        "schedules pass their ticks until it is enabled again. Every change is recorded "
        "(nodeTypePolicyChanges).",
    )
    execute_workflow: results.ExecutionResult = strawberry.mutation(
        resolver=execution_resolvers.execute_workflow,
        description="Run the workflow's current draft now (it is snapshotted and pinned); "
        "returns the QUEUED or RUNNING execution at once. The same `idempotencyKey` returns "
        "the same execution. `destinationNodeId` runs only that node and what it needs (its "
        "ancestors), reusing the outputs of `reuseFrom` (an execution of this workflow; "
        "default: its latest manual execution, those of `executeNode` aside) for every "
        "ancestor unchanged since then (its node runs' `source` is REUSED).",
    )
    execute_node: results.ExecutionResult = strawberry.mutation(
        resolver=execution_resolvers.execute_node,
        description="Run one node of the draft on the given `items` (a list of JSON "
        'objects): the editor\'s "test step". Recorded as a manual execution whose input is '
        "`{items}`, with `nodeOnly` true; nothing else runs and pins are not used.",
    )
    cancel_execution: results.ExecutionResult = strawberry.mutation(
        resolver=execution_resolvers.cancel_execution,
        description="Stop an execution; running nodes and nodes not yet started are CANCELLED.",
    )
    retry_execution: results.ExecutionResult = strawberry.mutation(
        resolver=execution_resolvers.retry_execution,
        description="Run a finished execution again as a new one. `fromFailedNode` reuses the "
        "outputs of the nodes that succeeded; `useLatestVersion` runs the current draft "
        "instead of the pinned version.",
    )
    create_credential: results.CredentialResult = strawberry.mutation(
        resolver=credential_resolvers.create_credential,
        description="Store a credential (its secrets encrypted) in a workspace of yours.",
    )
    update_credential: results.CredentialResult = strawberry.mutation(
        resolver=credential_resolvers.update_credential,
        description="Rename a credential or change its fields; omitted fields are kept.",
    )
    delete_credential: results.DeleteResult = strawberry.mutation(
        resolver=credential_resolvers.delete_credential,
        description="Delete a credential that no workflow uses (InUseError names those that do).",
    )
    share_credential: results.CredentialResult = strawberry.mutation(
        resolver=credential_resolvers.share_credential,
        description="Let another workspace you belong to use a credential in its nodes "
        "(owners and admins of the credential's workspace); its members never see its fields "
        "nor change it. Sharing again changes nothing.",
    )
    unshare_credential: results.CredentialResult = strawberry.mutation(
        resolver=credential_resolvers.unshare_credential,
        description="Stop sharing a credential with a workspace; that workspace's nodes using "
        "it get the node issue CREDENTIAL_NOT_SHARED and fail there when run.",
    )
    create_node_type: results.NodeTypeResult = strawberry.mutation(
        resolver=declarative_type_resolvers.create_node_type,
        description="Create a declarative node type (`ws.name`, version 1) in a workspace of "
        "yours; every problem of its definition is returned at once, with its path.",
    )
    update_node_type: results.NodeTypeResult = strawberry.mutation(
        resolver=declarative_type_resolvers.update_node_type,
        description="Give a declarative node type a new definition, as its next version: "
        "nodes keep the version they use until upgraded (`upgradeNode`).",
    )
    delete_node_type: results.DeleteResult = strawberry.mutation(
        resolver=declarative_type_resolvers.delete_node_type,
        description="Delete a declarative node type, every version, once no draft or "
        "published workflow uses it (InUseError names those that do).",
    )
    create_workspace: results.WorkspaceResult = strawberry.mutation(
        resolver=workspace_resolvers.create_workspace,
        description="Create a shared workspace; you are its owner.",
    )
    rename_workspace: results.WorkspaceResult = strawberry.mutation(
        resolver=workspace_resolvers.rename_workspace,
        description="Rename a workspace (owners and admins).",
    )
    delete_workspace: results.DeleteWorkspaceResult = strawberry.mutation(
        resolver=workspace_resolvers.delete_workspace,
        description="Delete a shared workspace and everything in it (owners only); refused "
        "while a workflow in it is active, and for a personal workspace.",
    )
    add_workspace_member: results.MemberResult = strawberry.mutation(
        resolver=workspace_resolvers.add_workspace_member,
        description="Make a user a member with a role: owner, admin, editor, operator or "
        "viewer (owners and admins; only owners make owners).",
    )
    change_member_role: results.MemberResult = strawberry.mutation(
        resolver=workspace_resolvers.change_member_role,
        description="Give a member another role (owners and admins; only owners change "
        "owners); the last owner stays one.",
    )
    remove_workspace_member: results.MemberResult = strawberry.mutation(
        resolver=workspace_resolvers.remove_workspace_member,
        description="Remove a member (owners and admins; only owners remove owners), or "
        "leave yourself; the last owner cannot leave.",
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


@strawberry.type(
    description="Live updates, over a websocket on /graphql (graphql-transport-ws protocol; "
    "authenticate with `Authorization` in the `connection_init` payload)."
)
class Subscription:
    execution_events: AsyncGenerator[execution_types.ExecutionEvent, None] = (
        strawberry.subscription(
            resolver=subscription_resolvers.execution_events,
            description="The events of one execution, in order, without gaps or duplicates: what "
            "is stored first (all, or those after `afterSequence`: pass the last sequence you "
            "received to continue after a reconnection), then live ones; completes after "
            "EXECUTION_FINISHED. Another user's execution gives an error, not events; a "
            "database unavailable for too long ends the stream with UNAVAILABLE (subscribe "
            "again with afterSequence).",
        )
    )
    execution_updates: AsyncGenerator[execution_types.Execution, None] = strawberry.subscription(
        resolver=subscription_resolvers.execution_updates,
        description="Your executions (of one workflow, with `workflowId`) each time their "
        "status changes, for live execution lists. Sends the state as it is when sent: a "
        "quick run may go from QUEUED to SUCCEEDED in one update. Never completes; a database "
        "unavailable for too long ends it with UNAVAILABLE (subscribe again).",
    )


class LoomSchema(strawberry.Schema):
    """Logs only unexpected errors, with the request id that the client is shown, and
    chooses the operation of a document as the GraphQL spec says (schema/operations.py)."""

    plain_fields_resolved_directly = 0

    def _create_execution_context(
        self,
        query: str | None,
        allowed_operation_types: Iterable[OperationType],
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionContext:
        return SpecOperationChoice(
            query=query,
            schema=self,
            allowed_operations=allowed_operation_types,
            context=context_value,
            root_value=root_value,
            variables=variable_values,
            provided_operation_name=operation_name,
            operation_extensions=operation_extensions,
        )

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_unexpected(errors, execution_context.context if execution_context else None)


def _resolve_plain_fields_directly(schema: LoomSchema) -> int:
    """Give fields without a resolver a bare attribute getter; returns how many.

    Strawberry resolves such a field through three Python calls (its wrapper, `get_result`,
    then `getattr`); a 50-node workflow has about a thousand of them per query, and this saves
    roughly a quarter of the request's time. The getter does exactly what Strawberry's default
    resolver does. Strawberry marks these wrappers `_is_default`; if a release stops doing so,
    nothing is replaced and `tests/api/test_schema_sdl.py` says so.
    """
    replaced = 0
    for graphql_type in schema._schema.type_map.values():
        if not isinstance(graphql_type, GraphQLObjectType):
            continue
        for graphql_field in graphql_type.fields.values():
            definition = (graphql_field.extensions or {}).get("strawberry-definition")
            if definition is None or not getattr(graphql_field.resolve, "_is_default", False):
                continue
            graphql_field.resolve = _attribute_resolver(attrgetter(definition.python_name))
            replaced += 1
    return replaced


def _attribute_resolver(getter: Callable[[Any], Any]) -> Callable[[Any, Any], Any]:
    def resolve(source: Any, _info: Any) -> Any:
        return getter(source)

    return resolve


def build_schema(
    *, max_depth: int = 12, max_tokens: int = 5000, max_aliases: int = 30
) -> LoomSchema:
    """The schema with Loom's limits, caches and error policy."""
    # Factories, not instances: Strawberry builds fresh extensions per request. The parser
    # and validation caches live at module level, so they are shared all the same. The limit
    # rules are built once here: the validation cache is keyed by the rule classes, and
    # `QueryDepthLimiter(...)` per request would make a new class, and a miss, every time.
    limit_rules: list[type[ASTValidationRule]] = [
        depth_rule(max_depth, None, None),
        alias_rule(max_aliases),
        json_scalar.JsonLiteralDepth,
    ]
    extensions: list[Any] = [
        ErrorPolicy,
        lambda: MaxTokensLimiter(max_token_count=max_tokens),
        lambda: CachedParse(maxsize=1000),
        lambda: AddValidationRules(limit_rules),
        lambda: ValidationCache(maxsize=1000),
        node_type_resolvers.NodeTypeResults,
    ]
    schema = LoomSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        execution_context_class=SharedEventResults,
        config=StrawberryConfig(
            disable_field_suggestions=True, scalar_map={JSON: json_scalar.JSON_SCALAR}
        ),
    )
    schema.plain_fields_resolved_directly = _resolve_plain_fields_directly(schema)
    return schema
