"""Which operation of a document a request runs, as the GraphQL spec says (GetOperation).

Strawberry runs the first operation of a document when the request names none, even when
the document holds several, and refuses an unknown `operationName` with an exception of its
own before validation. The spec makes both request errors. Here the choice is left to
graphql-core, which raises them as such ("Must provide operation name if query contains
multiple operations.", "Unknown operation named ..."), on every transport.
"""

from __future__ import annotations

from graphql import DocumentNode, OperationDefinitionNode
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType


class SpecOperationChoice(ExecutionContext):
    """Strawberry's execution context without its fallback to the first operation."""

    @property
    def operation_name(self) -> str | None:
        if self._provided_operation_name is None and len(_operations(self.graphql_document)) > 1:
            return None  # graphql-core then refuses the document: it names no operation
        return super().operation_name

    @property
    def operation_type(self) -> OperationType:
        """The chosen operation's type; QUERY when none can be chosen.

        QUERY passes every transport's check (GET allows only queries), so the client is
        told what is wrong with its request, not that its method cannot run an operation
        that will never run.
        """
        operations = _operations(self.graphql_document)
        name = self.operation_name
        if name is None:
            chosen = operations if len(operations) == 1 else []
        else:
            chosen = [op for op in operations if op.name is not None and op.name.value == name]
        if not chosen:
            return OperationType.QUERY
        return OperationType(chosen[0].operation.value)


def _operations(document: DocumentNode | None) -> list[OperationDefinitionNode]:
    if document is None:
        raise RuntimeError("No GraphQL document available")
    return [
        definition
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode)
    ]
