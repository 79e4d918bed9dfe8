"""Expected failures as values: the union results of mutations."""

from __future__ import annotations

from typing import Annotated

import strawberry

from schema.execution_types import Execution
from schema.preview_types import ExpressionError, ExpressionValue, NoDataError
from schema.types import (
    ApiToken,
    Credential,
    NodeType,
    Problem,
    User,
    Workflow,
    WorkflowDocument,
    WorkflowReference,
    Workspace,
    WorkspaceMember,
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


@strawberry.type(
    description="Only an admin may do this, or your role in the workspace does not allow it "
    "(docs/api.md: the role table)."
)
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
    Workflow | ValidationError | NotFoundError | VersionConflictError | ForbiddenError,
    strawberry.union("WorkflowResult", description="A workflow, or why the change failed."),
]
DeleteResult = Annotated[
    Deleted | NotFoundError | InUseError | ForbiddenError,
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
    Execution | ValidationError | NotFoundError | ForbiddenError,
    strawberry.union("ExecutionResult", description="An execution, or why there is none."),
]
CredentialResult = Annotated[
    Credential | ValidationError | NotFoundError | ForbiddenError,
    strawberry.union("CredentialResult", description="A credential, or why the change failed."),
]
NodeTypeResult = Annotated[
    NodeType | ValidationError | NotFoundError | ForbiddenError,
    strawberry.union(
        "NodeTypeResult", description="The node type as the change left it, or why not."
    ),
]
ExportWorkflowResult = Annotated[
    WorkflowDocument | NotFoundError,
    strawberry.union(
        "ExportWorkflowResult",
        description="The workflow's document, or NotFoundError: no such workflow (or not "
        "yours), or no such version of it.",
    ),
]
ImportWorkflowResult = Annotated[
    Workflow | ValidationError | NotFoundError | ForbiddenError,
    strawberry.union(
        "ImportWorkflowResult",
        description="The new workflow; ValidationError listing every problem of the "
        "document (nothing is stored); or NotFoundError for a workspace that is not yours.",
    ),
]
ExpressionPreviewResult = Annotated[
    ExpressionValue | ExpressionError | NoDataError | NotFoundError | ValidationError,
    strawberry.union(
        "ExpressionPreviewResult",
        description="The value, or why there is none: the expression's error, no data yet, "
        "a workflow, node or execution not found, or a bad argument.",
    ),
]
WorkspaceResult = Annotated[
    Workspace | ValidationError | NotFoundError | ForbiddenError,
    strawberry.union(
        "WorkspaceResult",
        description="The workspace as the change left it; ValidationError for a bad name; "
        "NotFoundError for a workspace you are not in; ForbiddenError for a role that may not.",
    ),
]
DeleteWorkspaceResult = Annotated[
    Deleted | ValidationError | NotFoundError | ForbiddenError,
    strawberry.union(
        "DeleteWorkspaceResult",
        description="The deleted workspace's id, or why not: ValidationError with the code "
        "HAS_ACTIVE_WORKFLOWS or PERSONAL_WORKSPACE, NotFoundError, ForbiddenError.",
    ),
]
MemberResult = Annotated[
    WorkspaceMember | ValidationError | NotFoundError | ForbiddenError,
    strawberry.union(
        "MemberResult",
        description="The membership as the change left it, or why not: ValidationError with "
        "the code ALREADY_MEMBER, UNKNOWN_ROLE, LAST_OWNER or PERSONAL_WORKSPACE; "
        "NotFoundError for a workspace you are not in or a user who is not there; "
        "ForbiddenError for a role that may not.",
    ),
]
