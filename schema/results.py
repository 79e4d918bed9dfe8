"""Expected failures as values: the union results of mutations."""

from __future__ import annotations

from typing import Annotated

import strawberry

from schema.execution_types import Execution
from schema.types import (
    ApiToken,
    Credential,
    NodeType,
    Problem,
    User,
    Workflow,
    WorkflowReference,
)


@strawberry.type(description="The input is invalid; `problems` lists every problem found.")
class ValidationError:
    message: str = strawberry.field(description="Summary of the problems.")
    problems: list[Problem] = strawberry.field(description="Every problem, with where it is.")


@strawberry.type(description="The object does not exist, or is not yours.")
class NotFoundError:
    message: str = strawberry.field(description="What was not found.")
    id: strawberry.ID = strawberry.field(description="The id that was asked for.")


@strawberry.type(description="The workflow changed since you read it; reload and retry.")
class VersionConflictError:
    message: str = strawberry.field(description="What conflicted.")
    expected_version: int = strawberry.field(description="The version you sent.")
    current_version: int = strawberry.field(description="The version stored now.")


@strawberry.type(description="Only an admin may do this.")
class ForbiddenError:
    message: str = strawberry.field(description="What was refused.")


@strawberry.type(description="Workflows still use it; change them first.")
class InUseError:
    message: str = strawberry.field(description="What uses it.")
    workflows: list[WorkflowReference] = strawberry.field(description="The workflows using it.")


@strawberry.type(description="The object was deleted.")
class Deleted:
    id: strawberry.ID = strawberry.field(description="Id of the deleted object.")


@strawberry.type(description="A new API token. `token` is shown now and never again.")
class CreatedApiToken:
    token: str = strawberry.field(description="The bearer token; store it now.")
    api_token: ApiToken = strawberry.field(description="The stored token's metadata.")
    user: User = strawberry.field(description="The user it belongs to.")


WorkflowResult = Annotated[
    Workflow | ValidationError | NotFoundError | VersionConflictError,
    strawberry.union("WorkflowResult", description="A workflow, or why the change failed."),
]
DeleteResult = Annotated[
    Deleted | NotFoundError | InUseError,
    strawberry.union("DeleteResult", description="What was deleted, or why not."),
]
TokenResult = Annotated[
    CreatedApiToken | ValidationError | NotFoundError | ForbiddenError,
    strawberry.union("TokenResult", description="A new token, or why none was made."),
]
RevokeTokenResult = Annotated[
    ApiToken | NotFoundError,
    strawberry.union("RevokeTokenResult", description="The revoked token, or why not."),
]
ExecutionResult = Annotated[
    Execution | ValidationError | NotFoundError,
    strawberry.union("ExecutionResult", description="An execution, or why there is none."),
]
CredentialResult = Annotated[
    Credential | ValidationError | NotFoundError,
    strawberry.union("CredentialResult", description="A credential, or why the change failed."),
]
NodeTypeResult = Annotated[
    NodeType | ValidationError | NotFoundError,
    strawberry.union(
        "NodeTypeResult", description="The declarative node type's new version, or why not."
    ),
]
