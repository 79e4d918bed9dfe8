"""What the schema's own field resolvers may ask of the per-request context.

The concrete context is built in `resolvers.context`; the types only see this protocol, so
they never import the resolvers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from strawberry.dataloader import DataLoader

if TYPE_CHECKING:
    from engine.output_pages import Page
    from schema.execution_types import Execution, NodeRun
    from schema.preview_types import OutputSchema
    from schema.types import User, WorkflowVersion, Workspace, WorkspaceMember


class StoredOutput(Protocol):
    """Stored output items by port, read a page at a time (storage/output_reads.py)."""

    def ports(self) -> list[tuple[str, int]]: ...

    async def page(self, port: str | None, offset: int, limit: int, max_bytes: int) -> Page: ...

    def items_bytes(self, port: str | None = None) -> int: ...


class StoredValue(Protocol):
    """One stored JSON value (an execution input), decoded only when it fits."""

    async def read(self, max_bytes: int) -> tuple[Any, bool]: ...


class Loaders(Protocol):
    """Per-request DataLoaders: each batches the lookups of one kind into one query."""

    @property
    def users(self) -> DataLoader[str, User | None]: ...

    @property
    def workspaces(self) -> DataLoader[str, Workspace | None]: ...

    @property
    def workspace_members(self) -> DataLoader[str, list[WorkspaceMember]]: ...

    @property
    def workflow_versions(self) -> DataLoader[str, list[WorkflowVersion]]: ...

    @property
    def node_runs(self) -> DataLoader[str, list[NodeRun]]: ...

    @property
    def execution_inputs(self) -> DataLoader[str, StoredValue | None]: ...

    @property
    def execution_outputs(self) -> DataLoader[str, StoredOutput | None]: ...

    @property
    def sub_executions(self) -> DataLoader[str, list[Execution]]: ...

    @property
    def draft_pins(self) -> DataLoader[str, dict[str, Any]]: ...

    @property
    def node_run_outputs(self) -> DataLoader[str, StoredOutput | None]: ...

    @property
    def input_shapes(self) -> DataLoader[tuple[str, str], OutputSchema | None]:
        """By (workflow id, node id): what flows into the node in the workflow's latest
        manual execution."""
        ...


class ShapeCache(Protocol):
    """Output shapes of finished node runs, by (node run id, port): they never change."""

    def get(self, key: tuple[str, str]) -> OutputSchema | None: ...

    def put(self, key: tuple[str, str], value: OutputSchema) -> None: ...


class SchemaContext(Protocol):
    """The part of the request context that schema types use."""

    @property
    def loaders(self) -> Loaders: ...

    @property
    def output_shapes(self) -> ShapeCache: ...

    def workspace_role(self, workspace_id: str) -> str | None:
        """The caller's role in the workspace; None when they are not a member."""
        ...

    def is_caller(self, user_id: str) -> bool:
        """Whether `user_id` is the authenticated caller."""
        ...
