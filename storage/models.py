"""SQLModel tables. The schema itself is owned by the Alembic migrations beside this module.

Everything a user makes belongs to a workspace; users reach workspaces through memberships.

Over 400 lines, but one cohesive thing: the table definitions, one class per table.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from storage.types import UTCDateTime, utcnow


def new_id() -> str:
    """A new identifier: a UUID of version 7 (RFC 9562) as text, so that both databases
    store it alike: the creation time in milliseconds, then 74 random bits.

    Time-ordered, so that new rows go to the last pages of a primary key and of the indexes
    that start with such an id (an execution's events, node runs and payloads), not to a
    random page of each: SQLite's commits write every page a transaction touched, and under
    webhook load random ids made that the largest part of them (docs/benchmarks.md).
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF << 76) | 0x7 << 76  # the version
    value = value & ~(0x3 << 62) | 0x2 << 62  # the variant
    return str(uuid.UUID(int=value))


def _created_at() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Workspace(SQLModel, table=True):
    """The owner of workflows, executions and credentials."""

    __tablename__ = "workspaces"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    name: str = Field(max_length=255)
    created_at: datetime = _created_at()


class User(SQLModel, table=True):
    """A person or a machine account; authenticates with API tokens."""

    __tablename__ = "users"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    name: str = Field(sa_column=Column(String(64), unique=True, nullable=False))
    role: str = Field(max_length=16)
    personal_workspace_id: str = Field(
        sa_column=Column(String(36), ForeignKey("workspaces.id"), nullable=False)
    )
    created_at: datetime = _created_at()


class Membership(SQLModel, table=True):
    """A user's access to a workspace, with their role in it (storage/roles.py)."""

    __tablename__ = "memberships"

    workspace_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
        )
    )
    user_id: str = Field(
        sa_column=Column(String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    )
    role: str = Field(max_length=16)
    created_at: datetime = _created_at()

    __table_args__ = (Index("ix_memberships_user", "user_id"),)


class ApiToken(SQLModel, table=True):
    """An API token. Only its SHA-256 is stored; the token itself is shown once."""

    __tablename__ = "api_tokens"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    user_id: str = Field(
        sa_column=Column(String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    )
    name: str = Field(max_length=128)
    token_hash: str = Field(sa_column=Column(String(64), unique=True, nullable=False))
    created_at: datetime = _created_at()
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # A scoped token: only this workspace (None: every workspace of the user) ...
    workspace_id: str | None = Field(
        default=None,
        sa_column=Column(
            String(36), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=True
        ),
    )
    # ... and no role above this one in it (None: the user's own roles).
    role: str | None = Field(default=None, max_length=16)

    __table_args__ = (Index("ix_api_tokens_user", "user_id"),)


class Workflow(SQLModel, table=True):
    """The editable draft of a workflow. `version` is bumped by every change."""

    __tablename__ = "workflows"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    workspace_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
        )
    )
    name: str = Field(max_length=255)
    description: str = Field(default="", sa_column=Column(Text, nullable=False))
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    nodes: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    edges: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    # Parameter problems per node id: stored with the draft, they block run and publish.
    node_issues: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # Node id -> items pinned as that node's output (manual executions use them, see
    # engine/pins.py); copied into each snapshot.
    pinned_data: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict,
        sa_column=Column(JSON, nullable=False, server_default=text("'{}'")),
    )
    version: int = 1
    published_version: int | None = None
    active: bool = False
    created_by: str | None = Field(
        default=None,
        sa_column=Column(String(36), ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    )
    created_at: datetime = _created_at()
    updated_at: datetime = _created_at()

    __table_args__ = (Index("ix_workflows_workspace_created", "workspace_id", "created_at", "id"),)


class WorkflowTag(SQLModel, table=True):
    """One row per tag of a workflow, so that filtering by tag uses an index."""

    __tablename__ = "workflow_tags"

    workflow_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True
        )
    )
    tag: str = Field(sa_column=Column(String(64), primary_key=True))

    __table_args__ = (Index("ix_workflow_tags_tag", "tag"),)


class WorkflowVersion(SQLModel, table=True):
    """An immutable snapshot of a workflow draft, written when first published or executed."""

    __tablename__ = "workflow_versions"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    workflow_id: str = Field(
        sa_column=Column(String(36), ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False)
    )
    version: int
    name: str = Field(max_length=255)
    nodes: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    edges: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    settings: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # The draft's pinned data at this version (only manual executions use it).
    pinned_data: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict,
        sa_column=Column(JSON, nullable=False, server_default=text("'{}'")),
    )
    created_by: str | None = Field(
        default=None,
        sa_column=Column(String(36), ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    )
    created_at: datetime = _created_at()

    __table_args__ = (
        UniqueConstraint("workflow_id", "version", name="uq_workflow_versions_workflow_version"),
    )


class Execution(SQLModel, table=True):
    """One run of a workflow version, pinned to its snapshot."""

    __tablename__ = "executions"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    workspace_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
        )
    )
    workflow_id: str = Field(
        sa_column=Column(String(36), ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False)
    )
    workflow_version_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("workflow_versions.id", ondelete="CASCADE"), nullable=False
        )
    )
    workflow_version: int = 1
    status: str = Field(max_length=16)
    mode: str = Field(max_length=16)
    # Input and output live in `execution_payloads`; these columns only hold the values of
    # executions recorded before migration 0003, which are read from here as a fallback.
    input: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    output: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    error: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    idempotency_key: str | None = Field(default=None, max_length=255)
    start_node_id: str | None = Field(default=None, max_length=255)
    # A retry reuses the outputs of the nodes that succeeded in the execution it retries.
    retry_of: str | None = Field(
        default=None,
        sa_column=Column(
            String(36), ForeignKey("executions.id", ondelete="SET NULL"), nullable=True
        ),
    )
    reuse_outputs: bool = False
    # A run to a node (`executeWorkflow(destinationNodeId)`): only it and its ancestors run;
    # with `node_only`, only it, on the input's items (`executeNode`). `reuse_from`: the
    # earlier execution whose still-valid outputs it reuses (engine/partial.py).
    destination_node_id: str | None = Field(default=None, max_length=255)
    node_only: bool = False
    reuse_from: str | None = Field(
        default=None,
        sa_column=Column(
            String(36), ForeignKey("executions.id", ondelete="SET NULL"), nullable=True
        ),
    )
    created_by: str | None = Field(
        default=None,
        sa_column=Column(String(36), ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    )
    engine_version: str = Field(max_length=32)
    cancel_requested_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The lease of the process running it (distributed mode). Every claim increments the
    # generation; the job that may claim it carries the generation it expects, and every
    # write of the runner is fenced by the generation it claimed.
    lease_generation: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # When a WAITING execution is due to resume (a durable wait), and its parked attempts
    # by node id (run id, attempt, start, when due) that continue then.
    resume_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    parked: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # When a QUEUED execution was given a slot of its workflow's `maxConcurrentExecutions`
    # and handed to the queue; unset while it waits for a slot.
    admitted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # A sub-workflow execution: the execution, node and node attempt that called it, its
    # place among that attempt's calls (one per item, or one), whether the caller waits for
    # it, and how many calls deep it is.
    parent_execution_id: str | None = Field(
        default=None,
        sa_column=Column(
            String(36), ForeignKey("executions.id", ondelete="SET NULL"), nullable=True
        ),
    )
    parent_node_id: str | None = Field(default=None, max_length=255)
    parent_run_id: str | None = Field(default=None, max_length=36)
    parent_batch: int | None = Field(default=None)
    parent_waits: bool = False
    call_depth: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    # What an ended execution kept of its data (engine/retention.py): NULL for all of it,
    # `summary` for its row and node runs without inputs, outputs or previews, `none` for
    # that too until the pruner deletes it, a grace period after its end.
    saved_data: str | None = Field(default=None, max_length=8)
    # The W3C `traceparent` of the span that created it, when tracing is on (engine/tracing.py).
    traceparent: str | None = Field(default=None, max_length=64)
    created_at: datetime = _created_at()
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    __table_args__ = (
        # Pruning by age scans these.
        Index("ix_executions_created_at", "created_at"),
        Index("ix_executions_workflow_created", "workflow_id", "created_at"),
        Index("ix_executions_workspace_created", "workspace_id", "created_at"),
        # Every lookup by status; the sampled counts by status and the oldest QUEUED
        # (storage/system_status.py) read it alone, not every unfinished execution's row.
        Index("ix_executions_status_created", "status", "created_at"),
        # Admission: the oldest QUEUED executions of a workflow that wait for a slot.
        Index("ix_executions_workflow_status", "workflow_id", "status", "created_at"),
        # A calling attempt's executions, and an execution's children.
        # One execution per sub-workflow call and batch (a second attempt reads the first's).
        Index("uq_executions_parent_call", "parent_run_id", "parent_batch", unique=True),
        Index("ix_executions_parent", "parent_execution_id", "created_at"),
        # Deleting an execution sets these to NULL where they name it (pruning).
        Index(
            "ix_executions_retry_of",
            "retry_of",
            sqlite_where=text("retry_of IS NOT NULL"),
            postgresql_where=text("retry_of IS NOT NULL"),
        ),
        Index(
            "ix_executions_reuse_from",
            "reuse_from",
            sqlite_where=text("reuse_from IS NOT NULL"),
            postgresql_where=text("reuse_from IS NOT NULL"),
        ),
        # The frequent prune of the executions that kept none of their data.
        Index(
            "ix_executions_saved_none",
            "finished_at",
            sqlite_where=text("saved_data = 'none'"),
            postgresql_where=text("saved_data = 'none'"),
        ),
        UniqueConstraint("workflow_id", "idempotency_key", name="uq_executions_idempotency"),
    )


class NodeRun(SQLModel, table=True):
    """One attempt of one node in one execution."""

    __tablename__ = "node_runs"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    execution_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("executions.id", ondelete="CASCADE"), nullable=False
        )
    )
    node_id: str = Field(max_length=255)
    node_name: str = Field(max_length=255)
    status: str = Field(max_length=16)
    attempt: int = 1
    input_items: int | None = None
    output_items: int | None = None
    error: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # What the attempt printed ({"lines": [...], "truncated": bool}); the Code node's.
    console: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # Where its output came from when the node did not run: PINNED (the snapshot's pinned
    # items); NULL when it ran.
    source: str | None = Field(default=None, max_length=16)
    created_at: datetime = _created_at()
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    __table_args__ = (
        Index("ix_node_runs_execution", "execution_id", "created_at"),
        Index("ix_node_runs_created_at", "created_at"),
        # Exactly one successful run per node and execution, whatever retries and
        # redeliveries happen.
        Index(
            "uq_node_runs_one_success",
            "execution_id",
            "node_id",
            unique=True,
            sqlite_where=text("status = 'SUCCEEDED'"),
            postgresql_where=text("status = 'SUCCEEDED'"),
        ),
    )


class NodeRunPayload(SQLModel, table=True):
    """The full output of a node run: a JSON object of ports, zstd-compressed."""

    __tablename__ = "node_run_payloads"

    node_run_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("node_runs.id", ondelete="CASCADE"), primary_key=True
        )
    )
    execution_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("executions.id", ondelete="CASCADE"), nullable=False
        )
    )
    encoding: str = Field(max_length=16)
    raw_bytes: int
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))

    __table_args__ = (Index("ix_node_run_payloads_execution", "execution_id"),)


class ExecutionPayload(SQLModel, table=True):
    """An execution's input or output, stored beside its row: zstd-compressed JSON.

    Kept out of `executions` because SQLite rewrites a whole row on every UPDATE, and an
    execution's row changes status several times while its input may be hundreds of MB.
    """

    __tablename__ = "execution_payloads"

    execution_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True
        )
    )
    kind: str = Field(sa_column=Column(String(8), primary_key=True))
    encoding: str = Field(max_length=16)
    raw_bytes: int
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class ExecutionEventRow(SQLModel, table=True):
    """The event log: every transition of an execution, numbered without gaps."""

    __tablename__ = "execution_events"

    execution_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True
        )
    )
    sequence: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    type: str = Field(max_length=32)
    at: datetime = Field(sa_type=UTCDateTime)
    node_id: str | None = Field(default=None, max_length=255)
    node_name: str | None = Field(default=None, max_length=255)
    attempt: int | None = None
    status: str | None = Field(default=None, max_length=16)
    duration_ms: float | None = None
    input_items: int | None = None
    output_items: int | None = None
    error: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    preview: Any = Field(default=None, sa_column=Column(JSON, nullable=True))


class Credential(SQLModel, table=True):
    """Secrets for an integration, owned by a workspace. `secret` is a Fernet token holding
    the fields, the id and the workspace (storage/secrets.py); nothing else is secret.
    `allowed_domains`: the hosts it may be sent to (required to share it)."""

    __tablename__ = "credentials"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    workspace_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
        )
    )
    name: str = Field(max_length=255)
    kind: str = Field(max_length=64)
    secret: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    # The hosts requests carrying it may go to (engine/credential_domains.py), None: any.
    # Not secret, so not in `secret`: the engine checks it before sending anything.
    allowed_domains: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_by: str | None = Field(
        default=None,
        sa_column=Column(String(36), ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    )
    created_at: datetime = _created_at()
    updated_at: datetime = _created_at()

    __table_args__ = (
        UniqueConstraint("workspace_id", "name", name="uq_credentials_workspace_name"),
    )


class CredentialShare(SQLModel, table=True):
    """A credential another workspace may use in its nodes (never see nor change): the
    owner's workspace shared it. Deleting the credential or the workspace ends the share."""

    __tablename__ = "credential_shares"

    credential_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("credentials.id", ondelete="CASCADE"), primary_key=True
        )
    )
    workspace_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
        )
    )
    shared_by: str | None = Field(
        default=None,
        sa_column=Column(String(36), ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    )
    created_at: datetime = _created_at()

    __table_args__ = (Index("ix_credential_shares_workspace", "workspace_id"),)


class NodeTypeDefinition(SQLModel, table=True):
    """One version of a workspace's declarative node type (`ws.name`): its definition as
    data (engine/declarative.py). A version is never changed: an update adds the next one.
    Deleting the type marks its versions `deleted_at`, so that a type made again later under
    the same name continues the numbering and a snapshot that pinned an old version can
    never run a different definition under that number."""

    __tablename__ = "node_type_definitions"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    workspace_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
        )
    )
    name: str = Field(max_length=128)
    version: int
    definition: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_by: str | None = Field(
        default=None,
        sa_column=Column(String(36), ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    )
    created_at: datetime = _created_at()
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    __table_args__ = (
        UniqueConstraint(
            "workspace_id", "name", "version", name="uq_node_type_definitions_version"
        ),
    )


class WebhookRoute(SQLModel, table=True):
    """Where an active workflow's webhook trigger answers: one row per method and path,
    written when the workflow is activated (or published while active)."""

    __tablename__ = "webhook_routes"

    method: str = Field(sa_column=Column(String(8), primary_key=True))
    path: str = Field(sa_column=Column(String(200), primary_key=True))
    workflow_id: str = Field(
        sa_column=Column(String(36), ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False)
    )
    workflow_version_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("workflow_versions.id", ondelete="CASCADE"), nullable=False
        )
    )
    node_id: str = Field(max_length=255)

    __table_args__ = (Index("ix_webhook_routes_workflow", "workflow_id"),)


class ScheduleRow(SQLModel, table=True):
    """An active workflow's schedule trigger and when it fires next (UTC)."""

    __tablename__ = "schedules"

    workflow_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True
        )
    )
    node_id: str = Field(sa_column=Column(String(255), primary_key=True))
    workflow_version_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("workflow_versions.id", ondelete="CASCADE"), nullable=False
        )
    )
    workflow_version: int
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    next_at: datetime = Field(sa_type=UTCDateTime)

    __table_args__ = (Index("ix_schedules_next_at", "next_at"),)


class ScheduleTick(SQLModel, table=True):
    """One row per schedule and instant that fired: the key that makes a tick run once,
    however many processes schedule."""

    __tablename__ = "schedule_ticks"

    workflow_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True
        )
    )
    node_id: str = Field(sa_column=Column(String(255), primary_key=True))
    scheduled_at: datetime = Field(sa_column=Column(UTCDateTime, primary_key=True))
    execution_id: str | None = Field(
        default=None,
        sa_column=Column(
            String(36), ForeignKey("executions.id", ondelete="SET NULL"), nullable=True
        ),
    )

    __table_args__ = (
        # Deleting an execution sets `execution_id` to NULL where it names it (pruning).
        Index(
            "ix_schedule_ticks_execution",
            "execution_id",
            sqlite_where=text("execution_id IS NOT NULL"),
            postgresql_where=text("execution_id IS NOT NULL"),
        ),
    )


class PruneRun(SQLModel, table=True):
    """One prune of old executions (storage/retention.py): when, and the rows it deleted
    by table."""

    __tablename__ = "prune_runs"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    started_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime = Field(sa_type=UTCDateTime)
    executions_deleted: int
    rows_deleted: dict[str, int] = Field(sa_column=Column(JSON, nullable=False))

    __table_args__ = (Index("ix_prune_runs_finished_at", "finished_at"),)


class LockAnchor(SQLModel, table=True):
    """A single row that SQLite writers touch to take the database write lock."""

    __tablename__ = "lock_anchor"

    id: int = Field(primary_key=True)
    touched: int = 0


# `scope` of a node type policy that holds for every workspace.
SERVER_SCOPE = "*"


class NodeTypePolicy(SQLModel, table=True):
    """A node type disabled server-wide (`scope` "*") or in one workspace (`scope` its id):
    one row per disabled type and scope, removed when it is enabled again."""

    __tablename__ = "node_type_policies"

    scope: str = Field(sa_column=Column(String(36), primary_key=True))
    node_type: str = Field(sa_column=Column(String(128), primary_key=True))
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    changed_by: str | None = Field(default=None, max_length=64)  # the user's name then
    changed_at: datetime = _created_at()


class NodeTypePolicyChange(SQLModel, table=True):
    """Every change of a node type policy, with who and when: the audit trail. The newest
    `id` is the revision every process compares to know its policies are current."""

    __tablename__ = "node_type_policy_changes"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    scope: str = Field(sa_column=Column(String(36), nullable=False))
    node_type: str = Field(sa_column=Column(String(128), nullable=False))
    enabled: bool
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    changed_by_id: str | None = Field(
        default=None,
        sa_column=Column(String(36), ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    )
    changed_by: str | None = Field(default=None, max_length=64)
    changed_at: datetime = _created_at()

    __table_args__ = (Index("ix_node_type_policy_changes_scope", "scope", "id"),)


# Long enough for PEP 440 dev and local versions; longer ones are cut.
VERSION_LENGTH = 64


class ProcessHeartbeat(SQLModel, table=True):
    """A Loom process (`api` or `worker`) that is running, or was: each writes its row every
    `LOOM_HEARTBEAT_S`, removes it when it stops cleanly, and a row not written for long is
    removed by the others (docs/operations.md, "System status")."""

    __tablename__ = "process_heartbeats"

    id: str = Field(sa_column=Column(String(128), primary_key=True))
    role: str = Field(max_length=16)
    version: str = Field(max_length=VERSION_LENGTH)
    host: str = Field(max_length=255)
    pid: int
    started_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    # By the database's clock (storage/system_status.py `database_now`).
    last_seen_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    # The process's own `LOOM_HEARTBEAT_S`: it is alive while its row is younger than 3 of it.
    interval_s: float = Field(default=15.0)


class AuditEvent(SQLModel, table=True):
    """Who did what, when: one row per change, written in the change's own transaction and
    never updated (storage/audit.py). No foreign keys: the record of a deleted workspace,
    token or workflow outlives it; only retention removes rows."""

    __tablename__ = "audit_events"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    occurred_at: datetime = _created_at()
    # None: a server-wide action (a token, a server-wide node type policy).
    workspace_id: str | None = Field(default=None, sa_column=Column(String(36), nullable=True))
    actor_id: str = Field(sa_column=Column(String(36), nullable=False))
    # The API token that authenticated the change, scoped or not (its id, never the token).
    token_id: str | None = Field(default=None, sa_column=Column(String(36), nullable=True))
    action: str = Field(sa_column=Column(String(64), nullable=False))
    target_kind: str = Field(sa_column=Column(String(32), nullable=False))
    target_id: str = Field(sa_column=Column(String(255), nullable=False))
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))

    __table_args__ = (
        Index("ix_audit_events_workspace", "workspace_id", "occurred_at", "id"),
        Index("ix_audit_events_occurred", "occurred_at", "id"),
        Index("ix_audit_events_actor", "actor_id", "occurred_at", "id"),
        Index("ix_audit_events_action", "action", "occurred_at", "id"),
    )


class WebhookIdempotencyKey(SQLModel, table=True):
    """A webhook's `Idempotency-Key`: the run it started and, once sent, the answer the
    caller got (storage/idempotency.py). It outlives the execution (a run that kept none of
    its data is deleted a minute after its end; senders retry for hours) until
    `LOOM_IDEMPOTENCY_KEY_TTL_HOURS` after it was first used, when the pruner deletes it.
    No foreign keys: the execution and the workflow may be deleted before it."""

    __tablename__ = "webhook_idempotency_keys"

    workflow_id: str = Field(sa_column=Column(String(36), primary_key=True))
    key: str = Field(sa_column=Column(String(255), primary_key=True))
    execution_id: str = Field(sa_column=Column(String(36), nullable=False))
    created_at: datetime = _created_at()
    # The answer sent (answering response modes): None until then.
    status_code: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    headers: dict[str, str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # None with a status code: the body was larger than the stored answer's cap.
    body: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))

    __table_args__ = (Index("ix_webhook_idempotency_keys_created", "created_at"),)
