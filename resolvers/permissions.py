"""Who may do which operation: every root field of the schema, and the action it needs.

`OPERATIONS` is the one table: each query, mutation and subscription names the `Action` it
needs in the workspace it touches (storage/roles.py says which roles allow each action), or
`None` for an operation that is not inside a workspace (the caller's own account and
tokens, the server-wide catalogue, creating a workspace; admin-only ones check the server
role). Resolvers never name an action themselves: `scope(info)` and `refusal(info, ...)`
look the operation up by its field name, so a new operation without a row here fails at its
first call, and tests/api/test_roles.py fails until the row and its cells are there.
"""

from __future__ import annotations

from typing import Any

import strawberry
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.workflow_fields import Collected
from resolvers.context import Context
from schema import results
from storage import errors, workspaces
from storage.roles import Action, Role, allows, parse_role, weaker

UNKNOWN_ROLE = "UNKNOWN_ROLE"

OPERATIONS: dict[str, Action | None] = {
    # Queries
    "viewer": None,
    "users": None,
    "apiTokens": None,
    "nodeTypePackages": None,
    "credentialKinds": None,
    "systemStatus": None,  # admins only (the server role)
    "workspaces": None,
    "workspace": Action.READ,
    "workflows": Action.READ,
    "workflow": Action.READ,
    "workflowVersion": Action.READ,
    "exportWorkflow": Action.READ,
    "nodeTypes": Action.READ,
    "nodeType": Action.READ,
    "nodeTypePolicyChanges": Action.READ,
    "executions": Action.READ,
    "execution": Action.READ,
    "evaluateExpression": Action.READ,
    "evaluateParameters": Action.READ,
    "credentials": Action.READ,
    "auditLog": Action.MANAGE,  # without a workspace: server admins only
    # Subscriptions
    "executionEvents": Action.READ,
    "executionUpdates": Action.READ,
    # Mutations: workflows
    "createWorkflow": Action.EDIT,
    "updateWorkflow": Action.EDIT,
    "importWorkflow": Action.EDIT,
    "deleteWorkflow": Action.EDIT,
    "duplicateWorkflow": Action.EDIT,
    # Edits in the source and creates in the target: Action.EDIT in both.
    "moveWorkflow": Action.EDIT,
    "addNode": Action.EDIT,
    "updateNode": Action.EDIT,
    "upgradeNode": Action.EDIT,
    "removeNode": Action.EDIT,
    "addEdge": Action.EDIT,
    "removeEdge": Action.EDIT,
    "pinNodeData": Action.EDIT,
    "unpinNodeData": Action.EDIT,
    "publishWorkflow": Action.EDIT,
    "setWorkflowActive": Action.EDIT,
    # Executions
    "executeWorkflow": Action.RUN,
    "executeNode": Action.RUN,
    "cancelExecution": Action.RUN,
    "retryExecution": Action.RUN,
    # Credentials and declarative node types
    "createCredential": Action.EDIT,
    "updateCredential": Action.EDIT,
    "deleteCredential": Action.EDIT,
    # In the credential's own workspace; sharing needs membership of the other one too.
    "shareCredential": Action.MANAGE,
    "unshareCredential": Action.MANAGE,
    "createNodeType": Action.EDIT,
    "updateNodeType": Action.EDIT,
    "deleteNodeType": Action.EDIT,
    "setNodeTypeEnabled": Action.MANAGE,
    # Workspaces and members (changing an owner, or making one, needs Action.OWN too)
    "createWorkspace": None,
    "renameWorkspace": Action.MANAGE,
    "deleteWorkspace": Action.OWN,
    "addWorkspaceMember": Action.MANAGE,
    "changeMemberRole": Action.MANAGE,
    "removeWorkspaceMember": Action.MANAGE,
    # Accounts and tokens (admins manage users and everyone's tokens)
    "createUser": None,
    "createApiToken": None,
    "revokeApiToken": None,
}


def action_of(info: Any) -> Action | None:
    """The action the operation being resolved needs (KeyError: an operation not decided)."""
    return OPERATIONS[info.field_name]


def scope(info: Any) -> tuple[str, ...]:
    """The workspaces where the caller may do the operation being resolved."""
    context: Context = info.context
    action = action_of(info)
    viewer = context.viewer()
    return viewer.workspace_ids if action is None else viewer.scopes.get(action, ())


def refusal(
    info: Any, workspace_id: str, action: Action | None = None
) -> results.ForbiddenError | None:
    """ForbiddenError when the caller's role in the workspace does not allow the operation
    being resolved (or `action`, when an operation needs more in some cases); None when it
    does. Callers look the object up among the caller's workspaces first, so that one in
    another workspace stays not found."""
    context: Context = info.context
    return refusal_for(info, context.viewer().role_in(workspace_id), action)


def target_workspace(
    info: Any, workspace_id: str | None
) -> str | results.NotFoundError | results.ForbiddenError:
    """The workspace an operation creates something in: `workspace_id`, or the caller's
    personal workspace when omitted. NotFoundError when it is not one of the caller's (its
    existence does not leak), ForbiddenError when the caller's role there does not allow the
    operation."""
    viewer = info.context.viewer()
    target = viewer.personal_workspace_id if workspace_id is None else str(workspace_id)
    if target not in viewer.workspace_ids:
        return results.NotFoundError(
            message=f"workspace {target!r} not found", id=strawberry.ID(target)
        )
    return refusal(info, target) or target


def refusal_for(
    info: Any, role: Role | None, action: Action | None = None
) -> results.ForbiddenError | None:
    """`refusal` for a caller with `role` (one read from the database, for instance)."""
    needed = action or action_of(info)
    if needed is None or (role is not None and allows(role, needed)):
        return None
    return results.ForbiddenError(message=forbidden_message(info.field_name, role, needed))


# For each action, the roles that may do it, as a refusal names them.
_ROLES_ALLOWED: dict[Action, str] = {
    action: ", ".join(role.value for role in Role if allows(role, action)) for action in Action
}


def check_role(collected: Collected, name: str, field: str = "role") -> Role | None:
    """The role called `name`; None with an UNKNOWN_ROLE problem (quoting at most 64
    characters of the name) when there is none."""
    role = parse_role(name)
    if role is None:
        known = ", ".join(r.value for r in Role)
        collected.add(UNKNOWN_ROLE, f"unknown role {name[:64]!r}; one of {known}", field)
    return role


def forbidden_message(operation: str, role: Role | None, action: Action) -> str:
    held = "no role" if role is None else f"the role {role.value}"
    return (
        f"{operation} needs one of the roles {_ROLES_ALLOWED[action]} in the workspace; "
        f"you have {held}"
    )


def markdown_table() -> str:
    """The role table as docs/api.md prints it (tests/docs/test_roles_table.py checks it)."""
    roles = list(Role)
    lines = [
        "| operation | needs | " + " | ".join(role.value for role in roles) + " |",
        "|---|---|" + "---|" * len(roles),
    ]
    for operation, action in sorted(OPERATIONS.items()):
        if action is None:
            cells = ["any"] * len(roles)
            needs = "(no workspace)"
        else:
            cells = ["yes" if allows(role, action) else "-" for role in roles]
            needs = action.value
        lines.append(f"| `{operation}` | {needs} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


async def stored_role(info: Any, session: AsyncSession, workspace_id: str) -> Role | None:
    """The caller's role in the workspace as stored now (capped by a scoped token), None when
    they are not a member. Changes that must not trust the principal (cached by another
    replica, or read before a change this one waited for) decide on this role."""
    viewer = info.context.viewer()
    try:
        stored = await workspaces.get_member_role(session, workspace_id, viewer.user_id)
    except errors.NotFoundError:
        return None
    return None if stored is None else weaker(stored, viewer.token_role)
