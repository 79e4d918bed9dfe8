"""What the schema's own field resolvers may ask of the per-request context.

The concrete context is built in `resolvers.context`; the types only see this protocol, so
they never import the resolvers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from strawberry.dataloader import DataLoader

if TYPE_CHECKING:
    from schema.execution_types import Execution, NodeRun
    from schema.types import User, WorkflowVersion, Workspace


class Loaders(Protocol):
    """Per-request DataLoaders: each batches the lookups of one kind into one query."""

    @property
    def users(self) -> DataLoader[str, User | None]: ...

    @property
    def workspaces(self) -> DataLoader[str, Workspace | None]: ...

    @property
    def workflow_versions(self) -> DataLoader[str, list[WorkflowVersion]]: ...

    @property
    def node_runs(self) -> DataLoader[str, list[NodeRun]]: ...

    @property
    def execution_inputs(self) -> DataLoader[str, object]: ...

    @property
    def execution_outputs(self) -> DataLoader[str, object]: ...

    @property
    def sub_executions(self) -> DataLoader[str, list[Execution]]: ...

    @property
    def node_run_outputs(self) -> DataLoader[str, dict[str, list[dict[str, object]]] | None]: ...


class SchemaContext(Protocol):
    """The part of the request context that schema types use."""

    @property
    def loaders(self) -> Loaders: ...
