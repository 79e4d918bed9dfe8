"""GraphQL object types: workflows, their graphs, versions, node types and accounts."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Final, Union

import strawberry
from strawberry.scalars import JSON

from schema.context import SchemaContext

if TYPE_CHECKING:
    from schema.preview_types import OutputSchema

Info = strawberry.Info[SchemaContext, None]


class NotRead(Enum):
    """A node's `pins` when the row it comes from was read without them (see
    `Node.pinned_data`): a value of its own type, never taken for pins."""

    PINS = "PINS"


PINS_NOT_READ: Final = NotRead.PINS
# A node's pinned items (a list of JSON objects), or that they were not read.
Pins = Union[JSON, NotRead, None]  # noqa: UP007 (JSON is not a class)


@strawberry.enum(description="What a node does once its retries are used up.")
class OnError(Enum):
    STOP = strawberry.enum_value("STOP", description="Fail the execution.")
    CONTINUE = strawberry.enum_value(
        "CONTINUE", description="Emit an item carrying the error on the main output and go on."
    )
    ERROR_OUTPUT = strawberry.enum_value(
        "ERROR_OUTPUT", description="Route the error to the node's `error` output port."
    )


@strawberry.enum(description="Where the editor shows a node type in its palette.")
class NodeGroup(Enum):
    TRIGGER = strawberry.enum_value("trigger", description="Starts executions.")
    ACTION = strawberry.enum_value("action", description="Talks to the outside world.")
    TRANSFORM = strawberry.enum_value("transform", description="Reshapes items.")
    FLOW = strawberry.enum_value("flow", description="Routes, merges or stops items.")


@strawberry.enum(description="Whether a problem blocks saving or only running and publishing.")
class ProblemSeverity(Enum):
    STRUCTURAL = strawberry.enum_value(
        "STRUCTURAL", description="The graph is malformed; the change was refused."
    )
    PARAMETER = strawberry.enum_value(
        "PARAMETER",
        description="A parameter is missing or invalid; the draft is saved, but cannot run "
        "or be published until it is fixed.",
    )
    HINT = strawberry.enum_value(
        "HINT",
        description="Nothing is wrong: advice shown with the node (a deprecated node type "
        "version); the draft runs and publishes.",
    )


@strawberry.type(description="One problem found in a workflow, with where it is.")
class Problem:
    code: str = strawberry.field(description="Stable machine-readable code, e.g. CYCLE.")
    message: str = strawberry.field(description="What is wrong, for a person.")
    node_id: strawberry.ID | None = strawberry.field(
        default=None, description="The node the problem is on, if any."
    )
    field: str | None = strawberry.field(
        default=None, description="Path of the offending field, e.g. `parameters.url`."
    )
    severity: ProblemSeverity = strawberry.field(
        default=ProblemSeverity.STRUCTURAL, description="Whether it blocks saving."
    )


@strawberry.type(description="A point on the editor canvas.")
class Position:
    x: float = strawberry.field(description="Horizontal coordinate.")
    y: float = strawberry.field(description="Vertical coordinate.")


@strawberry.type(description="How a node is retried after a retryable error.")
class RetryPolicy:
    max_attempts: int = strawberry.field(description="Attempts in all, the first included.")
    backoff_seconds: float = strawberry.field(description="Wait before the second attempt.")
    backoff_factor: float = strawberry.field(description="Each wait is this times the last.")
    max_backoff_seconds: float = strawberry.field(description="Upper bound of one wait.")


@strawberry.type(description="A node of a workflow graph: an instance of a node type.")
class Node:
    id: strawberry.ID = strawberry.field(description="Stable id, unique in the workflow.")
    name: str = strawberry.field(
        description="Unique name in the workflow; expressions refer to nodes by it."
    )
    type: str = strawberry.field(description="Node type name, e.g. `http_request`.")
    type_version: int | None = strawberry.field(
        description="Node type version the node runs, written down when it was saved (a "
        "newer version of the type never changes it); null only for a type not installed "
        "when it was saved."
    )
    parameters: JSON = strawberry.field(description="Parameter values; strings may hold {{ }}.")
    position: Position = strawberry.field(description="Where the node sits on the canvas.")
    disabled: bool = strawberry.field(description="A disabled node passes its items through.")
    notes: str = strawberry.field(description="Free text shown on the canvas.")
    retry: RetryPolicy | None = strawberry.field(description="Retry policy; null: no retries.")
    timeout_seconds: float | None = strawberry.field(description="Per-attempt time limit.")
    on_error: OnError = strawberry.field(description="What happens after a final failure.")
    credentials: JSON = strawberry.field(
        description="Credential references by kind: `{kind: credentialId}`."
    )
    issues: list[Problem] = strawberry.field(
        description="Parameter problems, which block running and publishing, and hints "
        "(severity HINT), which block nothing."
    )
    # The items pinned on the node, when the row it comes from was read with its pins;
    # `PINS_NOT_READ` when not (a workflow list): `pinnedData` reads the draft's then.
    pins: strawberry.Private[Pins] = None
    # The workflow the node belongs to (its draft or a version of it): reached only through
    # a workflow the viewer may read.
    workflow_id: strawberry.Private[str] = ""

    @strawberry.field(
        description="The items pinned as the node's output (`pinNodeData`), a list of JSON "
        "objects: manual executions give them as its output without running it; null when "
        "nothing is pinned."
    )
    async def pinned_data(self, info: Info) -> JSON | None:
        if not isinstance(self.pins, NotRead):
            return self.pins
        pinned = await info.context.loaders.draft_pins.load(self.workflow_id)
        found: JSON | None = pinned.get(str(self.id))
        return found

    @strawberry.field(
        description="The shape of the items that flow into the node (its main input) in the "
        "workflow's latest manual execution, found through the draft's edges; null when "
        "there is none or the node received nothing in it. See `OutputSchema`."
    )
    async def input_schema(
        self, info: Info
    ) -> Annotated[OutputSchema, strawberry.lazy("schema.preview_types")] | None:
        return await info.context.loaders.input_shapes.load((self.workflow_id, str(self.id)))


@strawberry.type(description="A connection from an output port to an input port.")
class Edge:
    id: strawberry.ID = strawberry.field(
        description="Derived id `source:sourceOutput->target:targetInput`, unique per graph."
    )
    source: strawberry.ID = strawberry.field(description="Id of the node the edge leaves.")
    source_output: str = strawberry.field(description="Output port of the source node.")
    target: strawberry.ID = strawberry.field(description="Id of the node the edge enters.")
    target_input: str = strawberry.field(description="Input port of the target node.")


@strawberry.type(
    description="A workspace: the owner of workflows, executions and credentials. Every user "
    "owns a personal one; shared ones have members, each with a role."
)
class Workspace:
    id: strawberry.ID = strawberry.field(description="Workspace id.")
    name: str = strawberry.field(description="Display name.")

    @strawberry.field(
        description="Your role in it: owner, admin, editor, operator or viewer (a scoped "
        "token's cap applied); null when you are not a member."
    )
    def role(self, info: Info) -> str | None:
        return info.context.workspace_role(str(self.id))

    @strawberry.field(
        description="Its members and their roles, by user name (empty unless you are one)."
    )
    async def members(self, info: Info) -> list[WorkspaceMember]:
        if info.context.workspace_role(str(self.id)) is None:
            return []  # only members see who else is one
        return await info.context.loaders.workspace_members.load(str(self.id))


@strawberry.type(description="A user's membership of a workspace.")
class WorkspaceMember:
    user: User = strawberry.field(description="The member.")
    role: str = strawberry.field(
        description="owner, admin, editor, operator or viewer (docs/api.md: the role table)."
    )


@strawberry.type(description="A user of Loom.")
class User:
    id: strawberry.ID = strawberry.field(description="User id.")
    name: str = strawberry.field(description="Unique login name.")
    role: str = strawberry.field(description="`admin` (manages users and tokens) or `member`.")
    created_at: datetime = strawberry.field(description="When the user was created.")
    personal_workspace_id: strawberry.Private[str]

    @strawberry.field(
        description="The workspace every user owns; shown to that user only (null for other "
        "users, and for a token scoped to another workspace)."
    )
    async def personal_workspace(self, info: Info) -> Workspace | None:
        context = info.context
        if not context.is_caller(str(self.id)) or not context.workspace_role(
            self.personal_workspace_id
        ):
            return None
        return await info.context.loaders.workspaces.load(self.personal_workspace_id)


@strawberry.type(description="An immutable snapshot of a workflow, as published or executed.")
class WorkflowVersion:
    id: strawberry.ID = strawberry.field(description="Snapshot id.")
    workflow_id: strawberry.ID = strawberry.field(description="The workflow it snapshots.")
    version: int = strawberry.field(description="The draft version it was taken from.")
    name: str = strawberry.field(description="Workflow name at that version.")
    nodes: list[Node] = strawberry.field(description="Nodes at that version.")
    edges: list[Edge] = strawberry.field(description="Edges at that version.")
    settings: JSON = strawberry.field(description="Settings at that version.")
    created_at: datetime = strawberry.field(description="When the snapshot was written.")


@strawberry.type(
    description='A workflow as one portable JSON document (docs/api.md, "Export and '
    'import"): what `importWorkflow` reads.'
)
class WorkflowDocument:
    workflow_id: strawberry.ID = strawberry.field(description="The workflow exported.")
    version: int = strawberry.field(
        description="The version the document holds: the draft's current version, or the "
        "snapshot asked for."
    )
    document: JSON = strawberry.field(
        description="The document: `formatVersion`, name, description, tags, settings, nodes "
        "(credentials by kind and name, never ids or secrets), edges and `pinData` (reserved, "
        "empty). No workflow id: importing it and exporting again gives the same document."
    )


@strawberry.type(description="A workflow: a graph of nodes, its draft version and its state.")
class Workflow:
    id: strawberry.ID = strawberry.field(description="Workflow id.")
    name: str = strawberry.field(description="Display name.")
    description: str = strawberry.field(description="Free text.")
    tags: list[str] = strawberry.field(description="Tags, for filtering.")
    version: int = strawberry.field(description="Draft revision: +1 on every change.")
    published_version: int | None = strawberry.field(
        description="The version triggers run; null until first published."
    )
    active: bool = strawberry.field(description="Whether the published version's triggers fire.")
    nodes: list[Node] = strawberry.field(description="The draft's nodes, in the saved order.")
    edges: list[Edge] = strawberry.field(description="The draft's edges.")
    settings: JSON = strawberry.field(
        description="Settings: timezone, executionTimeoutSeconds, maxConcurrentExecutions."
    )
    created_at: datetime = strawberry.field(description="When the workflow was created.")
    updated_at: datetime = strawberry.field(description="When the workflow last changed.")
    webhooks: list[WebhookEndpoint] = strawberry.field(
        description="Where the draft's webhook triggers answer once the workflow is published "
        "and active."
    )
    workspace_id: strawberry.Private[str]
    created_by_id: strawberry.Private[str | None]

    @strawberry.field(description="One node of the draft by id; null if there is none.")
    def node(self, id: strawberry.ID) -> Node | None:
        return next((node for node in self.nodes if node.id == id), None)

    @strawberry.field(description="Every parameter problem and hint of the draft, over all nodes.")
    def issues(self) -> list[Problem]:
        return [issue for node in self.nodes for issue in node.issues]

    @strawberry.field(
        description="Whether the draft can be executed and published as it is (hints do not "
        "stop it)."
    )
    def runnable(self) -> bool:
        return not any(
            issue.severity is not ProblemSeverity.HINT
            for node in self.nodes
            for issue in node.issues
        )

    @strawberry.field(description="The workspace that owns the workflow.")
    async def workspace(self, info: Info) -> Workspace | None:
        return await info.context.loaders.workspaces.load(self.workspace_id)

    @strawberry.field(description="Who created the workflow (null if that user was deleted).")
    async def created_by(self, info: Info) -> User | None:
        if self.created_by_id is None:
            return None
        return await info.context.loaders.users.load(self.created_by_id)

    @strawberry.field(description="Published or executed snapshots, newest first.")
    async def versions(self, info: Info) -> list[WorkflowVersion]:
        return await info.context.loaders.workflow_versions.load(self.id)


@strawberry.enum(description="How the editor renders a text or JSON parameter.")
class ParameterWidget(Enum):
    TEXT = strawberry.enum_value("text", description="One line of text.")
    MULTILINE = strawberry.enum_value("multiline", description="Several lines of text.")
    CODE = strawberry.enum_value("code", description="A code editor (the Code node's script).")
    PASSWORD = strawberry.enum_value("password", description="Text masked as it is typed.")
    JSON = strawberry.enum_value("json", description="A JSON editor.")


@strawberry.type(description="How the editor renders one parameter of a node type.")
class ParameterHint:
    parameter: str = strawberry.field(
        description="The parameter: `url` at the top level, `fields[].value` for the `value` "
        "of each entry of the list `fields`."
    )
    placeholder: str | None = strawberry.field(description="Example text shown while empty.")
    widget: ParameterWidget | None = strawberry.field(
        description="The editor to use; null: the one its schema type suggests."
    )
    show_when: JSON | None = strawberry.field(
        description="Shown only while each named parameter holds one of the listed values "
        '(`{"mode": ["combine_by_key"]}`), like n8n\'s displayOptions; null: always shown.'
    )


@strawberry.type(description="One version of a node type, by name and version.")
class NodeTypeVersionRef:
    name: str = strawberry.field(description="The type's name.")
    version: int = strawberry.field(description="The version.")


@strawberry.type(
    description="A `loom.node_types` entry point as the server loaded it: the package that "
    "declares it, and the node types it gave or why it gave none."
)
class NodeTypePackage:
    entry_point: str = strawberry.field(description="`name = module:attribute`.")
    distribution: str | None = strawberry.field(
        description="The installed distribution that declares it (null when unknown)."
    )
    version: str | None = strawberry.field(description="That distribution's version.")
    node_types: list[NodeTypeVersionRef] = strawberry.field(
        description="The node types it gave; empty when it was skipped."
    )
    error: str | None = strawberry.field(
        description="Why it was skipped (it failed to import, or gave an invalid type); "
        "null when it loaded."
    )


@strawberry.type(description="A named input or output of a node type.")
class Port:
    name: str = strawberry.field(description="Port name; `main` unless the type says otherwise.")
    display_name: str = strawberry.field(description="Label for the editor.")
    accepts_many: bool = strawberry.field(
        description="For inputs: whether several edges may end here (items are concatenated "
        "in edge order)."
    )


@strawberry.type(description="A kind of node the editor can place, built in or from a plugin.")
class NodeType:
    name: str = strawberry.field(
        description="`http_request`, `namespace.name` for plugins, `ws.name` for a "
        "workspace's declarative types."
    )
    version: int = strawberry.field(description="Type version (the latest in `nodeTypes`).")
    versions: list[int] = strawberry.field(description="Every version installed.")
    display_name: str = strawberry.field(description="Label for the palette.")
    description: str = strawberry.field(description="What the node does.")
    group: NodeGroup = strawberry.field(description="Palette group.")
    inputs: list[Port] = strawberry.field(description="Input ports; empty for triggers.")
    outputs: list[Port] = strawberry.field(description="Output ports.")
    parameters_schema: JSON = strawberry.field(description="JSON Schema of the parameters.")
    credential_kinds: list[str] = strawberry.field(description="Credential kinds it can use.")
    category: str = strawberry.field(
        description="Palette category (`Core` for Loom's own types, `Community` for plugins "
        "that name none)."
    )
    subcategory: str | None = strawberry.field(
        description="Palette section within the category (`Flow`, `Data transformation`, ...)."
    )
    icon: str | None = strawberry.field(
        description="An icon name (`fa:globe`: Font Awesome's names) or a `data:image/...` URI."
    )
    documentation_url: str | None = strawberry.field(
        description="Where the type is documented: an http(s) URL, or a page of Loom's docs "
        "(`docs/api.md#webhooks`)."
    )
    subtitle: str | None = strawberry.field(
        description="Shown under a node's name on the canvas: each `{name}` is replaced with "
        "the node's parameter `name` (left out when not set)."
    )
    parameter_hints: list[ParameterHint] = strawberry.field(
        description="How the form renders the parameters, in the order it shows them; "
        "parameters without a hint follow in the schema's order."
    )
    default_parameters: JSON = strawberry.field(
        description="The parameters a new node of this type starts with."
    )
    deprecated: str | None = strawberry.field(
        description="Why this version should no longer be used and what to use instead; "
        "null when it is current. Its nodes still run, with a NODE_TYPE_DEPRECATED hint."
    )
    definition: JSON | None = strawberry.field(
        default=None,
        description="For a workspace's declarative type (`ws.name`): its definition as "
        "given to `createNodeType` or `updateNodeType`; null for installed types.",
    )
    enabled: bool = strawberry.field(
        default=True,
        description="Whether workflows may run it, server-wide or, when a workspace was "
        "asked for, in that workspace. A disabled type stays in the catalog; workflows using "
        "it get a NODE_TYPE_DISABLED issue and cannot be published, activated or started.",
    )
    disabled_reason: str | None = strawberry.field(
        default=None,
        description="Why it is disabled (what disabled it, who, when, and their reason); "
        "null when it is enabled.",
    )


@strawberry.enum(description="What a node type policy holds for.")
class NodeTypePolicyScope(Enum):
    SERVER = strawberry.enum_value("SERVER", description="Every workspace of the server.")
    WORKSPACE = strawberry.enum_value("WORKSPACE", description="One workspace.")


@strawberry.type(description="One change of a node type policy: the audit trail.")
class NodeTypePolicyChange:
    id: strawberry.ID = strawberry.field(description="Ids grow with time.")
    node_type: str = strawberry.field(description="The node type's name.")
    scope: NodeTypePolicyScope = strawberry.field(description="Where the change holds.")
    workspace_id: strawberry.ID | None = strawberry.field(
        description="The workspace, for a WORKSPACE change."
    )
    enabled: bool = strawberry.field(description="Whether the type was enabled or disabled.")
    reason: str | None = strawberry.field(description="Why, as the person who changed it said.")
    changed_by: str | None = strawberry.field(
        description="Who changed it (the user's name at the time)."
    )
    changed_at: datetime = strawberry.field(description="When.")


@strawberry.type(description="Relay page information.")
class PageInfo:
    has_next_page: bool = strawberry.field(description="Whether more items follow.")
    has_previous_page: bool = strawberry.field(description="Whether items precede this page.")
    start_cursor: str | None = strawberry.field(description="Cursor of the first item.")
    end_cursor: str | None = strawberry.field(description="Cursor of the last item.")


@strawberry.type(description="One workflow in a connection, with its cursor.")
class WorkflowConnectionEdge:
    cursor: str = strawberry.field(description="Opaque cursor; pass as `after`.")
    node: Workflow = strawberry.field(description="The workflow.")


@strawberry.type(description="A page of workflows, newest first.")
class WorkflowConnection:
    edges: list[WorkflowConnectionEdge] = strawberry.field(description="The page's workflows.")
    page_info: PageInfo = strawberry.field(description="Paging state.")
    total_count_value: strawberry.Private[int | None] = None

    @strawberry.field(description="How many workflows match the filter, over all pages.")
    def total_count(self) -> int | None:
        return self.total_count_value


@strawberry.type(description="An API token; the secret itself is shown only when created.")
class ApiToken:
    id: strawberry.ID = strawberry.field(description="Token id.")
    name: str = strawberry.field(description="What the token is for.")
    created_at: datetime = strawberry.field(description="When it was created.")
    revoked_at: datetime | None = strawberry.field(description="When it was revoked, if it was.")
    workspace_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="The one workspace a scoped token may reach; null: all of yours.",
    )
    role: str | None = strawberry.field(
        default=None,
        description="The strongest role a scoped token acts with; null: your own roles.",
    )


@strawberry.type(
    description="Stored secrets for an integration. Secrets are write-only: `fields` holds "
    "the others, `secretFields` names the secrets that are set."
)
class Credential:
    id: strawberry.ID = strawberry.field(description="Credential id.")
    name: str = strawberry.field(description="Unique name in its workspace.")
    kind: str = strawberry.field(description="One of `credentialKinds`.")
    workspace_id: strawberry.ID = strawberry.field(description="The workspace that owns it.")
    fields: JSON = strawberry.field(description="The fields that are not secrets.")
    secret_fields: list[str] = strawberry.field(
        description="The secret fields that are set (their values are never shown)."
    )
    created_at: datetime = strawberry.field(description="When it was created.")
    updated_at: datetime = strawberry.field(description="When it last changed.")
    shared_with: list[Workspace] = strawberry.field(
        default_factory=list,
        description="The workspaces it is shared with that you are a member of (shown to "
        "the owner's members only).",
    )
    shared_elsewhere: int = strawberry.field(
        default=0,
        description="How many workspaces you are not a member of it is shared with too "
        "(their names are not shown).",
    )
    shared_from: Workspace | None = strawberry.field(
        default=None,
        description="The workspace that owns it and shared it with yours: its nodes may use "
        "it; its fields, changes and shares stay with the owner. Null for your own.",
    )
    allowed_domains: list[str] | None = strawberry.field(
        default=None,
        description="The hosts requests carrying it may go to (host names, `*.example.com` "
        "for the names under one, IP addresses), in normal form; a request to another host "
        "fails at its node before anything is sent. Null: any host (a credential must have "
        "them to be shared).",
    )


@strawberry.type(description="A kind of credential and the form that describes it.")
class CredentialKind:
    name: str = strawberry.field(description="Stable name, e.g. bearer_token.")
    display_name: str = strawberry.field(description="Name for people.")
    description: str = strawberry.field(description="What it is for.")
    schema: JSON = strawberry.field(
        description="JSON Schema of its fields; secrets are marked `writeOnly`."
    )
    secret_fields: list[str] = strawberry.field(description="Fields that are secrets.")


@strawberry.type(description="Where a webhook trigger answers.")
class WebhookEndpoint:
    node_id: strawberry.ID = strawberry.field(description="The webhook trigger node.")
    path: str = strawberry.field(description="The path after /webhook/.")
    url_path: str = strawberry.field(description="The URL path: /webhook/{path}.")
    methods: list[str] = strawberry.field(description="The HTTP methods it answers.")


@strawberry.type(description="A workflow, by id and name.")
class WorkflowReference:
    id: strawberry.ID = strawberry.field(description="Workflow id.")
    name: str = strawberry.field(description="Workflow name.")
