"""Storage errors. Expected outcomes (not found, stale version) are exceptions here and become
typed GraphQL results in the resolvers.

    StorageError
     +-- NotFoundError          the row does not exist or is not the caller's
     +-- VersionConflictError   the draft moved on since the caller read it
     +-- DuplicateNameError     a unique name is taken
"""

from __future__ import annotations


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
