"""Which node types may run where: the operator's and the admins' policies (pure, no I/O).

A node type is disabled by one of three things, checked in this order:

- the setting `LOOM_DISABLED_NODE_TYPES` (server-wide, fixed while the process runs);
- an admin's `setNodeTypeEnabled` without a workspace (server-wide);
- a workspace's `setNodeTypeEnabled` (that workspace only).

A disabled type stays registered and in the catalog (with why); a workflow of a workspace
where it is disabled gets the node issue NODE_TYPE_DISABLED, and publishing, activating and
starting new executions of it are refused with that problem. Executions created before
the change finish (running, waiting, or queued behind a concurrency limit): the check is made
when an execution is created, never after. A disabled
node (`disabled: true`, which passes its items through) does not run its type and is not
refused.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from engine.validation.report import Problem, Severity
from engine.validation.text import quote

NODE_TYPE_DISABLED = "NODE_TYPE_DISABLED"
SETTING = "LOOM_DISABLED_NODE_TYPES"


class PolicyScope(StrEnum):
    """What disabled a node type."""

    SETTING = "SETTING"  # LOOM_DISABLED_NODE_TYPES
    SERVER = "SERVER"  # an admin, for every workspace
    WORKSPACE = "WORKSPACE"  # for one workspace


@dataclass(frozen=True, slots=True)
class Disabled:
    """Why one node type is disabled, and by whom and when (None for the setting)."""

    scope: PolicyScope
    reason: str | None = None
    by: str | None = None  # the user's name at the time
    at: datetime | None = None

    def describe(self) -> str:
        """The sentence a catalog entry and a node issue give as the reason."""
        if self.scope is PolicyScope.SETTING:
            where = f"disabled on this server by the setting {SETTING}"
        elif self.scope is PolicyScope.SERVER:
            where = "disabled on this server"
        else:
            where = "disabled in this workspace"
        if self.by:
            where += f" by {self.by}"
        if self.at is not None:
            where += f" on {self.at.strftime('%Y-%m-%d %H:%M UTC')}"
        return f"{where}: {self.reason}" if self.reason else where


_KEYS = itertools.count(1)


@dataclass(frozen=True, slots=True)
class PolicySnapshot:
    """Every policy in force at one moment: `revision` moves with every change."""

    revision: int = 0
    setting: frozenset[str] = frozenset()
    server: Mapping[str, Disabled] = field(default_factory=dict)
    # Workspace id -> node type name -> why.
    workspaces: Mapping[str, Mapping[str, Disabled]] = field(default_factory=dict)
    # Never the same for two snapshots made in the process: what is built from one (the
    # API's catalog answers) is built again for another.
    key: int = field(default_factory=lambda: next(_KEYS), compare=False)

    @property
    def empty(self) -> bool:
        """Nothing is disabled anywhere (the common case: every check is skipped)."""
        return not (self.setting or self.server or self.workspaces)

    def affects(self, workspace_id: str) -> bool:
        """Whether anything is disabled for the workspace."""
        return bool(self.setting or self.server or workspace_id in self.workspaces)

    def disabled(self, name: str, workspace_id: str | None) -> Disabled | None:
        """Why `name` is disabled for `workspace_id` (None: server-wide only), or None."""
        if name in self.setting:
            return Disabled(PolicyScope.SETTING)
        found = self.server.get(name)
        if found is not None or workspace_id is None:
            return found
        in_workspace = self.workspaces.get(workspace_id)
        return None if in_workspace is None else in_workspace.get(name)

    def problems(
        self, nodes: Iterable[Mapping[str, Any]], workspace_id: str | None
    ) -> list[Problem]:
        """NODE_TYPE_DISABLED for each enabled node (stored form: `id`, `type`, `disabled`)
        whose type is disabled for the workspace."""
        if self.empty or (workspace_id is not None and not self.affects(workspace_id)):
            return []
        found = []
        for node in nodes:
            if node.get("disabled"):
                continue
            name = node.get("type")
            why = self.disabled(name, workspace_id) if isinstance(name, str) else None
            if why is not None:
                found.append(disabled_problem(str(node.get("id")), str(name), why))
        return found


def disabled_problem(node_id: str, name: str, why: Disabled) -> Problem:
    """The node issue of a node whose type is disabled."""
    return Problem(
        NODE_TYPE_DISABLED,
        f"Node type {quote(name)} is {why.describe()}; the workflow cannot be published, "
        "activated or run until it is enabled again (setNodeTypeEnabled) or the node removed "
        "or disabled",
        node_id,
        "type",
        severity=Severity.PARAMETER,
    )


EMPTY = PolicySnapshot()
