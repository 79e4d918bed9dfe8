"""Workspace roles and what each may do: the one table every permission check reads.

Pure data, no I/O. An operation of the API names the `Action` it needs in the workspace it
touches (resolvers/permissions.py); a caller may do it when their role in that workspace
allows the action:

    action        owner  admin  editor  operator  viewer
    read            x      x      x        x        x     workflows, executions, credential names
    read_secrets    x      x      x        x              credentials' non-secret fields
    run             x      x      x        x              execute, cancel, retry
    edit            x      x      x                       workflows, credentials, node types
    manage          x      x                              members, rename, node type policies
    own             x                                     delete the workspace, owners
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """A member's role in a workspace, strongest first."""

    OWNER = "owner"
    ADMIN = "admin"
    EDITOR = "editor"
    OPERATOR = "operator"
    VIEWER = "viewer"


class Action(StrEnum):
    """What an operation does in a workspace."""

    READ = "read"
    READ_FIELDS = "read_fields"
    RUN = "run"
    EDIT = "edit"
    MANAGE = "manage"
    OWN = "own"


# Roles are nested: each may do what the ones after it may, and more.
RANKS: dict[Role, int] = {role: len(Role) - index for index, role in enumerate(Role)}

# The weakest role that may do each action: with the nesting, this is the whole table.
WEAKEST: dict[Action, Role] = {
    Action.READ: Role.VIEWER,
    Action.READ_FIELDS: Role.OPERATOR,
    Action.RUN: Role.OPERATOR,
    Action.EDIT: Role.EDITOR,
    Action.MANAGE: Role.ADMIN,
    Action.OWN: Role.OWNER,
}

# What each role may do, worked out once: a check on a hot path is one set lookup.
ALLOWED: dict[Role, frozenset[Action]] = {
    role: frozenset(a for a in Action if RANKS[role] >= RANKS[WEAKEST[a]]) for role in Role
}


def allows(role: Role, action: Action) -> bool:
    """Whether `role` may do `action`."""
    return action in ALLOWED[role]


def weaker(role: Role, cap: Role | None) -> Role:
    """`role`, lowered to `cap` when a cap is given (a scoped token)."""
    return role if cap is None or RANKS[role] <= RANKS[cap] else cap


_BY_NAME: dict[str, Role] = {role.value: role for role in Role}


def parse_role(name: str) -> Role | None:
    """The role called `name`, or None for an unknown name."""
    return _BY_NAME.get(name)
