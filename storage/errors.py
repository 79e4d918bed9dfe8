"""Storage errors. Expected outcomes (not found, stale version) are exceptions here and become
typed GraphQL results in the resolvers.

    StorageError
     +-- NotFoundError          the row does not exist or is not the caller's
     +-- VersionConflictError   the draft moved on since the caller read it
     +-- DuplicateNameError     a unique name is taken

`is_unavailable` tells a database that cannot be reached for now from a failing statement.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc


class StorageError(Exception):
    """Base of every storage error."""


class NotFoundError(StorageError):
    def __init__(self, kind: str, identifier: str) -> None:
        super().__init__(f"{kind} {identifier!r} not found")
        self.kind = kind
        self.identifier = identifier


class VersionConflictError(StorageError):
    def __init__(self, workflow_id: str, expected_version: int, current_version: int) -> None:
        super().__init__(
            f"workflow {workflow_id!r} is at version {current_version}, "
            f"not the expected {expected_version}"
        )
        self.workflow_id = workflow_id
        self.expected_version = expected_version
        self.current_version = current_version


class DuplicateNameError(StorageError):
    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"{kind} named {name!r} already exists")
        self.kind = kind
        self.name = name


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` says the database could not be reached or used for a while (a
    connection lost or refused, the pool exhausted), so that the same read may succeed
    when tried again; not a fault of the statement itself."""
    if isinstance(error, sa_exc.TimeoutError):  # no pooled connection came free in time
        return True
    if isinstance(error, sa_exc.DBAPIError):
        # A statement of None: the error came while connecting.
        return (
            error.connection_invalidated
            or error.statement is None
            or isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError)
        )
    return isinstance(error, OSError | TimeoutError)
