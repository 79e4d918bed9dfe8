"""GraphQL input types."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

from schema.types import OnError


@strawberry.input(description="A point on the editor canvas.")
class PositionInput:
    x: float = strawberry.field(description="Horizontal coordinate.")
    y: float = strawberry.field(description="Vertical coordinate.")


@strawberry.input(description="How a node is retried after a retryable error.")
class RetryPolicyInput:
    max_attempts: int = strawberry.field(default=3, description="Attempts in all (1-10).")
    backoff_seconds: float = strawberry.field(default=1.0, description="First wait.")
    backoff_factor: float = strawberry.field(default=2.0, description="Growth of each wait.")
    max_backoff_seconds: float = strawberry.field(default=60.0, description="Longest wait.")


@strawberry.input(description="A node of a workflow graph.")
class NodeInput:
    id: strawberry.ID = strawberry.field(description="Stable id, unique in the workflow.")
    name: str = strawberry.field(description="Unique name in the workflow (1-128 characters).")
    type: str = strawberry.field(description="Node type name.")
    type_version: int | None = strawberry.field(
        default=None,
        description="Node type version; null: the version the node had, or for a new node "
        "the type's latest, written down when saved.",
    )
    parameters: JSON | None = strawberry.field(
        default=None, description="Parameter values, a JSON object."
    )
    position: PositionInput | None = strawberry.field(default=None, description="Canvas spot.")
    disabled: bool | None = strawberry.field(default=False, description="Pass items through.")
    notes: str | None = strawberry.field(default=None, description="Free text.")
    retry: RetryPolicyInput | None = strawberry.field(default=None, description="Retries.")
    timeout_seconds: float | None = strawberry.field(
        default=None, description="Per-attempt time limit."
    )
    on_error: OnError | None = strawberry.field(
        default=OnError.STOP, description="What happens after a final failure."
    )
    credentials: JSON | None = strawberry.field(
        default=None, description="Credential references by kind: `{kind: credentialId}`."
    )


@strawberry.input(description="A connection from an output port to an input port.")
class EdgeInput:
    source: strawberry.ID = strawberry.field(description="Id of the node the edge leaves.")
    source_output: str = strawberry.field(default="main", description="Output port.")
    target: strawberry.ID = strawberry.field(description="Id of the node the edge enters.")
    target_input: str = strawberry.field(default="main", description="Input port.")


@strawberry.input(description="A whole workflow, as the editor saves it.")
class WorkflowInput:
    name: str = strawberry.field(description="Display name (1-255 characters).")
    description: str | None = strawberry.field(default=None, description="Free text.")
    nodes: list[NodeInput] = strawberry.field(description="Every node.")
    edges: list[EdgeInput] = strawberry.field(description="Every edge.")
    settings: JSON | None = strawberry.field(
        default=None,
        description="Settings object: `timezone` (IANA name), `executionTimeoutSeconds`, "
        "`maxConcurrentExecutions`.",
    )
    tags: list[str] | None = strawberry.field(default=None, description="Tags (at most 50).")


@strawberry.input(description="Narrows a workflow listing; all given criteria must hold.")
class WorkflowFilter:
    name_contains: str | None = strawberry.field(
        default=None, description="Case-insensitive substring of the name."
    )
    tag: str | None = strawberry.field(default=None, description="Has this tag.")
    active: bool | None = strawberry.field(default=None, description="Is (not) active.")


@strawberry.input(description="A new credential.")
class CredentialInput:
    name: str = strawberry.field(description="Unique name in the workspace (1-255 characters).")
    kind: str = strawberry.field(description="One of `credentialKinds`.")
    data: JSON = strawberry.field(
        description="Its fields, secrets included (see the kind's schema)."
    )
    workspace_id: strawberry.ID | None = strawberry.field(
        default=None, description="Owner; your personal workspace when omitted."
    )
    allowed_domains: list[str] | None = strawberry.field(
        default=None,
        description="The hosts requests carrying it may go to: host names "
        "(api.example.com), `*.example.com` for the names under one, IP addresses; no "
        "scheme, port or path. Omitted: any host (it cannot be shared then).",
    )


@strawberry.input(
    description="Changes to a credential: fields given replace the stored ones, fields given "
    "as null are removed, the others (secrets you cannot read back) are kept."
)
class CredentialUpdateInput:
    name: str | None = strawberry.field(default=None, description="A new name.")
    data: JSON | None = strawberry.field(default=None, description="Fields to change.")
    allowed_domains: list[str] | None = strawberry.field(
        default=None,
        description="New `allowedDomains` (as in CredentialInput); [] for any host, refused "
        "while it is shared. Omitted: kept.",
    )


@strawberry.input(
    description="A declarative node type's definition: data, not code (docs/node-types.md, "
    '"Declarative node types"). Its request template\'s strings may hold `{{ }}` expressions '
    "over `$parameter` (the node's parameters) and `$json` (the item)."
)
class DeclarativeNodeTypeInput:
    display_name: str = strawberry.field(description="Label for the palette (1-100 characters).")
    description: str | None = strawberry.field(default=None, description="What the node does.")
    parameters_schema: JSON | None = strawberry.field(
        default=None,
        description="JSON Schema (Draft 2020-12) of the node's parameters, an object; none "
        "when omitted.",
    )
    credential_kinds: list[str] | None = strawberry.field(
        default=None,
        description="Credential kinds a node may use (of `credentialKinds`); the node's "
        "credential signs every request sent to the URL's origin.",
    )
    catalog: JSON | None = strawberry.field(
        default=None,
        description="How the editor presents it: `category`, `subcategory`, `icon`, "
        "`documentationUrl`, `subtitle`, `parameterHints` (each `name`, `placeholder`, "
        "`widget`, `showWhen`) and `defaults`.",
    )
    request_template: JSON = strawberry.field(
        description="The request sent for each item: `method`, `url`, `query` and `headers` "
        "(objects of name to value), `body` (JSON, sent as JSON), and optionally "
        "`timeoutSeconds`, `maxResponseBytes`, `retry` (`maxAttempts`, `backoffSeconds`)."
    )
    response_mapping: JSON | None = strawberry.field(
        default=None,
        description="What becomes items: `select` (a dotted path in the answer), `split` (an "
        "array into one item per element), `keep` or `drop` (field names).",
    )
    pagination: JSON | None = strawberry.field(
        default=None,
        description="More pages: `nextUrl` (the path of the next page's URL in the answer) or "
        "`cursor` (the path of a cursor, sent back as the query parameter `cursorParameter`), "
        "and `maxPages`, the most pages fetched per item.",
    )
