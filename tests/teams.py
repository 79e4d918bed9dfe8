"""Builders of shared workspaces and their members for tests, and the operations they use."""

from __future__ import annotations

from typing import Any

from tests.factories import only

REFUSALS = """
  ... on ValidationError { message problems { code message field } }
  ... on NotFoundError { message id }
  ... on ForbiddenError { message }
"""
CREATE_WORKSPACE = f"""
mutation($name: String!) {{
  createWorkspace(name: $name) {{ __typename ... on Workspace {{ id name }} {REFUSALS} }}
}}
"""
RENAME_WORKSPACE = f"""
mutation($id: ID!, $name: String!) {{
  renameWorkspace(id: $id, name: $name) {{ __typename ... on Workspace {{ id name }} {REFUSALS} }}
}}
"""
DELETE_WORKSPACE = f"""
mutation($id: ID!) {{
  deleteWorkspace(id: $id) {{ __typename ... on Deleted {{ id }} {REFUSALS} }}
}}
"""
MEMBER = "... on WorkspaceMember { role user { id name } }"
ADD_MEMBER = f"""
mutation($ws: ID!, $user: ID!, $role: String!) {{
  addWorkspaceMember(workspaceId: $ws, userId: $user, role: $role) {{
    __typename {MEMBER} {REFUSALS}
  }}
}}
"""
CHANGE_ROLE = f"""
mutation($ws: ID!, $user: ID!, $role: String!) {{
  changeMemberRole(workspaceId: $ws, userId: $user, role: $role) {{
    __typename {MEMBER} {REFUSALS}
  }}
}}
"""
REMOVE_MEMBER = f"""
mutation($ws: ID!, $user: ID!) {{
  removeWorkspaceMember(workspaceId: $ws, userId: $user) {{ __typename {MEMBER} {REFUSALS} }}
}}
"""
CREATE_IN = """
mutation($input: WorkflowInput!, $ws: ID) {
  createWorkflow(input: $input, workspaceId: $ws) {
    __typename ... on Workflow { id workspace { id } } ... on NotFoundError { id }
    ... on ForbiddenError { message }
  }
}
"""
WORKSPACE = """
query($id: ID!) { workspace(id: $id) { id name role members { role user { name } } } }
"""
WORKSPACES = "{ workspaces { id name role } }"
SHARED = """
  ... on Credential {
    id name workspaceId fields secretFields sharedWith { id name } sharedFrom { id name }
  }
"""
SHARE = f"""
mutation($id: ID!, $ws: ID!) {{
  shareCredential(id: $id, workspaceId: $ws) {{ __typename {SHARED} {REFUSALS} }}
}}
"""
UNSHARE = f"""
mutation($id: ID!, $ws: ID!) {{
  unshareCredential(id: $id, workspaceId: $ws) {{ __typename {SHARED} {REFUSALS} }}
}}
"""
MOVE_REFUSALS = """
  ... on ValidationError { message problems { code message nodeId field } }
  ... on NotFoundError { message id }
  ... on ForbiddenError { message }
"""
MOVE = f"""
mutation($id: ID!, $ws: ID!) {{
  moveWorkflow(id: $id, workspaceId: $ws) {{
    __typename ... on Workflow {{ id workspace {{ id }} }} {MOVE_REFUSALS}
  }}
}}
"""

ROLES = ("viewer", "operator", "editor", "admin", "owner")


async def create_workspace(owner: Any, name: str = "Team") -> str:
    """A shared workspace owned by `owner`; its id."""
    created = only(await owner.gql(CREATE_WORKSPACE, {"name": name}))
    assert created["__typename"] == "Workspace", created
    return str(created["id"])


async def add_member(by: Any, workspace_id: str, member: Any, role: str) -> dict[str, Any]:
    """Add `member` with `role` as `by`; returns the result (checked by the caller)."""
    variables = {"ws": workspace_id, "user": member.user_id, "role": role}
    return dict(only(await by.gql(ADD_MEMBER, variables)))


async def team(owner: Any, members: dict[str, Any], name: str = "Team") -> str:
    """A shared workspace owned by `owner` with each of `members` (role -> caller)."""
    workspace_id = await create_workspace(owner, name)
    for role, member in members.items():
        added = await add_member(owner, workspace_id, member, role)
        assert added["__typename"] == "WorkspaceMember", added
    return workspace_id
