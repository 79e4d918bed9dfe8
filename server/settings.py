"""Loom's configuration: one settings object, read once from `LOOM_*` variables and `.env`.

Over 400 lines, but one cohesive thing: one `Settings` class, a field per setting.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as _SourceError

from engine.output_limit import DEFAULT_MAX_NODE_OUTPUT_BYTES, MIN_MAX_NODE_OUTPUT_BYTES

if TYPE_CHECKING:
    from engine.code import CodeLimits
    from engine.expressions.budget import ExpressionLimits
    from engine.node_types import NodeTypeRegistry
    from engine.nodes.base import NodeResources
    from engine.retention import SaveDefaults
    from storage.db import Database
    from storage.node_type_policies import NodeTypePolicies
    from storage.recorder import GroupCommitWriter
    from storage.retention import RetentionPolicy
    from storage.secrets import SecretBox
    from storage.subworkflows import StartCalls


ENV_PREFIX = "LOOM_"


class InvalidSettingsError(Exception):
    """A `LOOM_*` setting has a value Loom cannot use; the message is one line that names the
    variable, says what is wrong and gives an example."""


def _string_list(value: object) -> object:
    """A list setting as written in the environment: a JSON list (`["a", "b"]`) or
    comma-separated (`a,b`)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a valid JSON list: {exc.msg} at character {exc.pos}") from exc
    return [item.strip() for item in text.split(",") if item.strip()]


def _network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise ValueError("not an IP network or address") from exc
    return value


def _node_type_name(value: str) -> str:
    from engine.node_types import NODE_TYPE_NAME

    if not NODE_TYPE_NAME.match(value):
        raise ValueError(f"{value!r} is not a node type name (like http_request or acme.greet)")
    return value


def _url_schemes(*schemes: str) -> Callable[[str | None], str | None]:
    def check(value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        scheme = parts.scheme.split("+")[0].lower()
        if scheme not in schemes or "://" not in value:
            raise ValueError(f"not a URL starting with {' or '.join(s + '://' for s in schemes)}")
        try:
            parts.port  # noqa: B018 (parsing it is the check)
        except ValueError:
            raise ValueError("its port is not a number from 0 to 65535") from None
        return value

    return check


METRICS_TOKEN_MIN_LENGTH = 16


def _metrics_token(value: SecretStr | None) -> SecretStr | None:
    # Empty (`LOOM_METRICS_TOKEN=`) would turn metrics on while guarding nothing.
    if value is not None and len(value.get_secret_value()) < METRICS_TOKEN_MIN_LENGTH:
        raise ValueError(
            f"must be at least {METRICS_TOKEN_MIN_LENGTH} characters (unset it for no token)"
        )
    return value


# Lists are read from the environment by `_string_list`, not by pydantic-settings' JSON
# decoding (which accepts JSON only and fails with a traceback that names no variable).
def _no_limit(value: object) -> object:
    """ "" and "none" (any case): no limit."""
    if isinstance(value, str) and value.strip().lower() in ("", "none"):
        return None
    return value


StringList = Annotated[list[str], NoDecode, BeforeValidator(_string_list)]
NetworkList = Annotated[
    list[Annotated[str, AfterValidator(_network)]], NoDecode, BeforeValidator(_string_list)
]
NodeTypeNameList = Annotated[
    list[Annotated[str, AfterValidator(_node_type_name)]], NoDecode, BeforeValidator(_string_list)
]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]
SaveDataValue = Literal["all", "summary", "none"]


class Settings(BaseSettings):
    """Every knob Loom has. Passed down explicitly; nothing reads the environment again."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    data_dir: Path = Field(
        default=Path("data"), description="Where embedded mode keeps its SQLite file and keys."
    )
    database_url: Annotated[
        str | None, AfterValidator(_url_schemes("postgresql", "postgres", "sqlite"))
    ] = Field(
        default=None,
        description="SQLAlchemy URL; unset means a SQLite file in the data directory. "
        "postgresql:// URLs use asyncpg.",
        examples=["postgresql://loom:secret@db.example:5432/loom"],
    )
    database_pre_ping: bool = Field(
        default=False,
        description="Test each pooled PostgreSQL connection with a round trip before use. Off, "
        "a connection broken by a database restart fails the statement in flight once and the "
        "pool reconnects; on, that never happens but every transaction costs a round trip more.",
    )
    database_recycle_s: float = Field(
        default=300.0,
        description="Replace pooled PostgreSQL connections older than this (seconds).",
        gt=0,
    )
    redis_url: Annotated[str | None, AfterValidator(_url_schemes("redis", "rediss", "unix"))] = (
        Field(
            default=None,
            description="Redis URL; unset means embedded mode (no Redis).",
            examples=["redis://127.0.0.1:6379/0"],
        )
    )
    http_allowed_networks: NetworkList = Field(
        default_factory=list,
        description="Networks the HTTP Request node may reach although they are private or "
        "local (comma-separated or a JSON list); everything not globally routable is refused "
        "otherwise.",
        examples=["10.1.0.0/16,192.168.5.0/24"],
    )
    disabled_node_types: NodeTypeNameList = Field(
        default_factory=list,
        description="Node types no workflow may run on this server (comma-separated or a JSON "
        "list; every process must share it): they stay in the catalog, disabled, and workflows "
        "using them cannot be published, activated or started. Admins disable more over the "
        "API (setNodeTypeEnabled).",
        examples=["code,http_request"],
    )
    node_type_policy_refresh_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often, at most, a process reads node type policies again (seconds): "
        "a change made by one process holds in the others after at most this long.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Encrypts credentials (every process must share it). Unset in embedded "
        "mode: a key file generated in the data directory, readable by its owner only.",
    )
    previous_secret_keys: SecretStr | None = Field(
        default=None,
        description="Comma-separated keys being retired: they still decrypt; "
        "`loom secrets rotate` re-encrypts everything under `LOOM_SECRET_KEY`.",
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Bootstraps (or re-keys) the `admin` user with this token."
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Annotated[LogLevel, BeforeValidator(lambda value: str(value).lower())] = "info"
    log_format: Annotated[
        Literal["text", "json"], BeforeValidator(lambda value: str(value).lower())
    ] = Field(
        default="text",
        description="`text` (`LEVEL logger message`) or `json`: one JSON object per line with "
        "time, level, message, logger and, where known, request, execution, workflow and "
        "node ids, attempt, and trace and span ids.",
        examples=["json"],
    )
    access_log: bool = Field(
        default=False,
        description="Log one line per HTTP request (method, route, status, duration), in the "
        "log format. Off by default: about 100 µs of CPU per request (docs/operations.md).",
    )
    tracing: Annotated[
        Literal["off", "otlp"], BeforeValidator(lambda value: str(value).lower())
    ] = Field(
        default="off",
        description="`otlp` exports OpenTelemetry traces over OTLP/HTTP, to where the "
        "standard OTEL_EXPORTER_OTLP_ENDPOINT says (http://localhost:4318 by default), "
        "as OTEL_SERVICE_NAME (default `loom`); `off` imports no OpenTelemetry.",
        examples=["otlp"],
    )

    max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        description="Largest accepted HTTP request body (413 above).",
        ge=1,
    )
    max_graph_nodes: int = Field(default=2000, description="Largest workflow, in nodes.", ge=1)
    max_pinned_bytes: int = Field(
        default=4 * 1024 * 1024,
        description="Largest size of all the items pinned on one workflow, as JSON.",
        ge=2,
    )
    max_query_depth: int = Field(default=12, ge=1)
    max_query_tokens: int = Field(default=5000, ge=1)
    max_query_aliases: int = Field(default=30, ge=0)
    max_page_size: int = Field(default=100, ge=1)
    graphiql: bool = Field(default=True, description="Serve GraphiQL to browsers at /graphql.")
    allowed_origins: StringList = Field(
        default_factory=list,
        description="Origins allowed to open websockets (comma-separated or a JSON list); "
        "empty allows same-origin only.",
        examples=["https://app.example,https://admin.example"],
    )
    webhook_timeout_s: float = Field(
        default=120.0,
        description="How long a webhook that answers when the run ends (or through a Respond "
        "to Webhook node) waits before it answers 504; the run goes on.",
        gt=0,
    )
    graphql_ws_legacy: bool = Field(
        default=False,
        description="Also accept the legacy `graphql-ws` websocket protocol (subscriptions-"
        "transport-ws); off by default: graphql-transport-ws is its successor.",
    )
    ws_keepalive_s: float = Field(
        default=15.0,
        description="Seconds between the server's pings on an idle websocket; 0 disables them.",
        ge=0,
    )
    ws_compression: bool = Field(
        default=False,
        description="Compress websocket messages (permessage-deflate). Events are small: "
        "compressing each one for each subscriber costs more CPU than it saves bandwidth.",
    )
    max_subscriptions_per_connection: int = Field(
        default=20, description="Operations one websocket may run at once.", ge=1
    )
    max_subscriptions: int = Field(
        default=10_000, description="Subscriptions one API process serves at once.", ge=1
    )
    subscription_buffer: int = Field(
        default=1000,
        description="Live events buffered per subscriber; one that falls further behind "
        "catches up from the database.",
        ge=1,
    )
    subscription_db_connections: int = Field(
        default=4,
        description="Pooled database connections the subscriptions of one API process may "
        "use at once (of the pool's 30); the rest stay for queries and mutations.",
        ge=1,
    )
    subscription_retry_s: float = Field(
        default=60.0,
        description="How long subscriptions wait for an unavailable database, retrying, "
        "before they end with the UNAVAILABLE error.",
        gt=0,
    )
    plan_cache_size: int = Field(
        default=256, description="Compiled workflow versions kept per process (LRU).", ge=1
    )
    max_node_concurrency: int = Field(
        default=16, description="Nodes of one execution that may run at the same time.", ge=1
    )
    max_node_output_bytes: int = Field(
        default=DEFAULT_MAX_NODE_OUTPUT_BYTES,
        description="Largest output of one node, as JSON (all its ports and items): a larger "
        "one fails the node with NODE_OUTPUT_TOO_LARGE and nothing of it is stored.",
        ge=MIN_MAX_NODE_OUTPUT_BYTES,
    )
    lease_seconds: float = Field(
        default=30.0,
        description="Distributed mode: how long a worker's claim on an execution lasts without "
        "renewal; a killed worker's executions resume elsewhere within this time.",
        gt=0,
    )
    worker_concurrency: int = Field(
        default=10, description="Executions one `loom worker` runs at the same time.", ge=1
    )
    poll_delay_s: float = Field(
        default=0.005,
        description="How often an idle worker polls the queue (arq's default, 0.5 s, costs "
        "about 250 ms median pick-up latency).",
        gt=0,
    )
    sweep_interval_s: float = Field(
        default=5.0,
        description="How often the (single active) sweeper re-enqueues what the queue lost.",
        gt=0,
    )
    shutdown_grace_s: float = Field(
        default=30.0,
        description="On SIGTERM a worker lets running nodes finish for this long, then "
        "interrupts them (they run again elsewhere).",
        ge=0,
    )
    # Bounded user work (docs/expressions.md, "Limits"): what rendering one node's
    # parameters for one item may cost, and when a held event loop is reported.
    expression_max_steps: int = Field(
        default=100_000,  # as engine.expressions.budget.ExpressionLimits
        description="Steps (operations, and elements visited) one rendering of a node's "
        "parameters for one item may take; past it the node fails with EXPRESSION_LIMIT. "
        "About 0.1 µs each: the default holds the event loop for 5 to 15 ms at most.",
        ge=1_000,
    )
    expression_max_value_size: int = Field(
        default=1_000_000,
        description="Largest value an expression may build (a template's text included), in "
        "characters and elements counted recursively.",
        ge=1_000,
    )
    regex_timeout_s: float = Field(
        default=0.02,
        description="Time regular expressions may take: in all per rendering of a node's "
        "parameters (matches()), and in all per item for the regex conditions of IF, Filter "
        "and Switch. It holds the event loop while it runs.",
        gt=0,
        le=10,
    )
    metrics_token: Annotated[SecretStr | None, AfterValidator(_metrics_token)] = Field(
        default=None,
        description="Serve Prometheus metrics at /metrics on the API port, to requests with "
        "`Authorization: Bearer <this>` (and ask for it on the metrics port too).",
    )
    metrics_port: int | None = Field(
        default=None,
        description="Serve Prometheus metrics on this port of their own (`loom worker` has "
        "no other way); 0 picks a free one.",
        examples=[9464],
        ge=0,
        le=65535,
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Interface the metrics port listens on."
    )
    metrics_sample_s: float = Field(
        default=15.0,
        description="How often the metrics' database gauges (queue depth, running and "
        "waiting executions) are sampled.",
        gt=0,
    )
    metrics_workflow_labels: bool = Field(
        default=False,
        description="Label execution counters with the workflow id (one series per "
        "workflow: only where workflows are few).",
    )
    heartbeat_s: float = Field(
        default=15.0,
        description="How often every process writes its heartbeat (systemStatus shows one "
        "not written for 3 intervals as not alive).",
        gt=0,
    )
    heartbeat_forget_s: float = Field(
        default=24 * 3600.0,
        description="Heartbeats older than this are removed (their process is gone).",
        gt=0,
    )
    loop_stall_s: float = Field(
        default=0.1,
        description="An event loop held longer than this is logged as a stall, naming the "
        "execution whose node held it.",
        gt=0,
    )
    durable_wait_s: float = Field(
        default=30.0,
        description="A `wait` node waiting longer than this parks its execution (WAITING) "
        "and frees the process; it resumes on any worker, after any restart.",
        ge=0,
    )
    webhook_route_cache_s: float = Field(
        default=1.0,
        description="How long an API process keeps a webhook route it looked up; changes made "
        "through another API process are seen within this time (0: look up every request).",
        ge=0,
    )
    max_subworkflow_depth: int = Field(
        default=10,
        description="How deep Execute Workflow calls may nest (a workflow calling itself "
        "stops there with SUBWORKFLOW_DEPTH_EXCEEDED).",
        ge=1,
        le=1000,
    )
    gc_threshold: int = Field(
        default=50_000,
        description="New containers between young garbage collections (Python's default is "
        "700, costly for large workflow data); 0 keeps Python's default.",
        ge=0,
    )
    token_cache_s: float = Field(
        default=5.0,
        description="How long a verified API token is trusted without the database.",
        ge=0,
    )

    # The Code node: JavaScript in V8 sandbox processes (engine/code, docs/code-node.md).
    code_timeout_s: float = Field(
        default=10.0,
        description="How long a Code node's script may run when the node sets no timeout "
        "(with one, the node's timeout is the limit); then V8 stops it (CODE_TIMEOUT).",
        gt=0,
        le=24 * 3600,
    )
    code_heap_mb: int = Field(
        default=64,
        description="JavaScript heap a Code node's script may use, its input items included "
        "(CODE_MEMORY_LIMIT past it).",
        ge=8,
        le=8192,
    )
    code_result_mb: int = Field(
        default=16,
        description="Largest result of a Code node's script, as JSON (CODE_MEMORY_LIMIT past it).",
        ge=1,
        le=1024,
    )
    code_sandboxes: int = Field(
        default=2,
        description="Sandbox processes each Loom process keeps for Code nodes (about 80 MB "
        "each): that many scripts run at once, others wait for one.",
        ge=1,
        le=64,
    )
    # What ended executions keep, unless their workflow's settings say (engine/retention.py).
    save_data_on_success: SaveDataValue = Field(
        default="all",
        description="What successful executions keep: all, summary (statuses and timings, "
        "no inputs or outputs) or none (deleted LOOM_PRUNE_NONE_AFTER_S after they end).",
    )
    save_data_on_error: SaveDataValue = Field(
        default="all", description="What failed and cancelled executions keep."
    )
    save_manual_executions: SaveDataValue = Field(
        default="all", description="What manual executions keep, whatever their outcome."
    )
    # How long ended executions stay (storage/retention.py).
    executions_max_age_hours: Annotated[float | None, BeforeValidator(_no_limit)] = Field(
        default=336.0,
        description="Prune ended executions older than this (hours; 336 is 14 days). Empty: "
        "no limit (or none).",
        gt=0,
    )
    executions_max_count: Annotated[int | None, BeforeValidator(_no_limit)] = Field(
        default=None,
        description="Prune the oldest ended executions beyond this many. Empty: no limit.",
        examples=[10000],
        ge=1,
    )
    failed_executions_max_age_hours: Annotated[float | None, BeforeValidator(_no_limit)] = Field(
        default=None,
        description="Prune failed executions by this age only, not by the two above (keep "
        "them longer). Empty: they follow the two above.",
        examples=[720],
        gt=0,
    )
    audit_max_age_hours: Annotated[float | None, BeforeValidator(_no_limit)] = Field(
        default=8760.0,
        description="Prune audit log records older than this (hours; 8760 is a year). Empty: "
        "keep them (or none).",
        gt=0,
    )
    prune_interval_s: float = Field(
        default=600.0,
        description="How often a process that schedules prunes old executions (seconds).",
        gt=0,
    )
    prune_none_after_s: float = Field(
        default=60.0,
        description="Executions whose workflow keeps none of their data are deleted this "
        "long after they end (seconds): until then a cancel, a webhook's repeat or a late "
        "subscriber still finds their end. Pruned every quarter of it (at most every "
        "LOOM_PRUNE_INTERVAL_S).",
        gt=0,
    )
    idempotency_key_ttl_hours: float = Field(
        default=24.0,
        description="How long a webhook's Idempotency-Key is remembered after its first use "
        "(hours): until then a repeat gets the first run's id or answer, even once the run is "
        "deleted; after it, the key starts a new run. Expired keys are pruned with the "
        "executions.",
        gt=0,
    )
    prune_batch_size: int = Field(
        default=50,
        description="Executions deleted per transaction by a prune: small enough that "
        "writers never wait long for one.",
        ge=1,
        le=100_000,
    )

    def save_defaults(self) -> SaveDefaults:
        """What ended executions keep unless their workflow says."""
        from engine.retention import SaveData, SaveDefaults

        return SaveDefaults(
            on_success=SaveData(self.save_data_on_success),
            on_error=SaveData(self.save_data_on_error),
            manual=SaveData(self.save_manual_executions),
        )

    def retention_policy(self) -> RetentionPolicy:
        """The server-wide bounds of how long ended executions stay."""
        from storage.retention import RetentionPolicy

        return RetentionPolicy(
            max_age_hours=self.executions_max_age_hours,
            max_count=self.executions_max_count,
            failed_max_age_hours=self.failed_executions_max_age_hours,
            batch_size=self.prune_batch_size,
            none_after_s=self.prune_none_after_s,
            audit_max_age_hours=self.audit_max_age_hours,
            idempotency_key_ttl_hours=self.idempotency_key_ttl_hours,
        )

    def code_limits(self) -> CodeLimits:
        """The Code node's limits, as the sandbox takes them."""
        from engine.code import CodeLimits

        return CodeLimits(
            timeout_s=self.code_timeout_s,
            heap_bytes=self.code_heap_mb * 1024 * 1024,
            result_bytes=self.code_result_mb * 1024 * 1024,
            pool_size=self.code_sandboxes,
        )

    def database(self) -> Database:
        """The database these settings point to, with their pool options."""
        from storage.db import Database  # imported late: the CLI starts without SQLAlchemy

        return Database(
            self.resolved_database_url(),
            pre_ping=self.database_pre_ping,
            recycle_s=self.database_recycle_s,
        )

    @field_validator("heartbeat_forget_s")
    @classmethod
    def _forget_after_the_alive_window(cls, value: float, info: ValidationInfo) -> float:
        # A row removed sooner than it is shown dead would make a process vanish instead.
        interval_s = info.data.get("heartbeat_s")
        if interval_s is not None and value <= 3 * interval_s:
            raise ValueError(
                f"must be more than 3 times LOOM_HEARTBEAT_S ({interval_s:g}), or a process "
                "silent for a while is removed before it is shown not alive"
            )
        return value

    def check_disabled_node_types(self, registry: NodeTypeRegistry) -> None:
        """Refuse (`InvalidSettingsError`) a name in `disabled_node_types` that is not an
        installed node type: a misspelt name would leave the type enabled."""
        unknown = [name for name in self.disabled_node_types if not registry.has_name(name)]
        if unknown:
            raise InvalidSettingsError(
                f"{ENV_PREFIX}DISABLED_NODE_TYPES: {', '.join(map(repr, unknown))} "
                f"{'is' if len(unknown) == 1 else 'are'} not among the installed node types "
                "(`loom node-types list` lists them)"
            )

    def node_type_policies(
        self, database: Database, registry: NodeTypeRegistry
    ) -> NodeTypePolicies:
        """What this process knows of which node types are disabled where
        (`check_disabled_node_types` first)."""
        from storage.node_type_policies import NodeTypePolicies

        self.check_disabled_node_types(registry)
        return NodeTypePolicies(
            database, self.disabled_node_types, refresh_s=self.node_type_policy_refresh_s
        )

    def node_resources(
        self,
        database: Database,
        box: SecretBox | None,
        start_calls: StartCalls,
        writer: GroupCommitWriter,
        policies: NodeTypePolicies | None = None,
    ) -> NodeResources | None:
        """The HTTP client, credentials, sub-workflow calls (whose executions `start_calls`
        starts: `ExecutionLifecycle.start_calls`; `writer`, the process's, fences what they
        adopt) and the Code node's sandbox lent to nodes;
        None without a secret key. The sandbox starts its processes on first use."""
        from engine.code import CodeSandbox
        from engine.network_policy import NetworkPolicy
        from engine.nodes.base import NodeResources
        from storage.credentials import DatabaseCredentials
        from storage.subworkflows import DatabaseWorkflowCaller

        if box is None:
            return None
        policy = NetworkPolicy.from_strings(self.http_allowed_networks)
        return NodeResources(
            policy,
            DatabaseCredentials(database, box),
            DatabaseWorkflowCaller(
                database, self.max_subworkflow_depth, start_calls, writer, policies
            ),
            CodeSandbox(self.code_limits()),
        )

    def secret_box(self) -> SecretBox | None:
        """What encrypts credentials: `secret_key`, or in embedded mode the key file."""
        from storage.secrets import SecretBox, embedded_key

        previous = []
        if self.previous_secret_keys is not None:
            raw = self.previous_secret_keys.get_secret_value()
            previous = [key.strip() for key in raw.split(",") if key.strip()]
        if self.secret_key is not None and self.secret_key.get_secret_value():
            return SecretBox(self.secret_key.get_secret_value(), previous)
        if self.redis_url:
            return None  # distributed mode refuses to start without a key
        data_dir = self.data_dir
        return SecretBox(lambda: embedded_key(data_dir), previous)

    def expression_limits(self) -> ExpressionLimits:
        """The budget of expression rendering these settings give every node."""
        from engine.expressions.budget import ExpressionLimits

        return ExpressionLimits(
            max_steps=self.expression_max_steps,
            max_value_size=self.expression_max_value_size,
            regex_timeout_s=self.regex_timeout_s,
        )

    def resolved_database_url(self) -> str:
        """The async SQLAlchemy URL to connect to."""
        if self.database_url is None:
            return f"sqlite+aiosqlite:///{(self.data_dir / 'loom.db').resolve()}"
        url = self.database_url
        for prefix, driver in (
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if url.startswith(prefix):
                return driver + url[len(prefix) :]
        return url

    def sqlite_path(self) -> Path | None:
        """The SQLite file these settings point to; None for PostgreSQL or an in-memory one."""
        url = self.resolved_database_url()
        prefix = "sqlite+aiosqlite:///"
        if not url.startswith(prefix) or url[len(prefix) :] in ("", ":memory:"):
            return None
        return Path(url[len(prefix) :].split("?")[0]).resolve()

    def database_label(self) -> str:
        """The database as a user would write it, without its password."""
        path = self.sqlite_path()
        if path is not None:
            return f"sqlite:///{path}"
        from sqlalchemy.engine import make_url

        return make_url(self.database_url or "").render_as_string(hide_password=True)


# Values not repeated in an error message: secrets, and URLs that may carry a password.
_NOT_ECHOED = frozenset(
    {
        "secret_key",
        "previous_secret_keys",
        "admin_token",
        "metrics_token",
        "database_url",
        "redis_url",
    }
)


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment and `.env`; a bad value raises InvalidSettingsError
    naming its `LOOM_*` variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = [_describe(error["loc"], error["msg"], error["input"]) for error in exc.errors()]
        raise InvalidSettingsError("; ".join(problems)) from exc
    except _SourceError as exc:  # a value pydantic-settings could not even read
        raise InvalidSettingsError(str(exc)) from exc


def _describe(location: tuple[int | str, ...], message: str, value: object) -> str:
    field_name = str(location[0])
    variable = ENV_PREFIX + field_name.upper()
    subject = variable
    if len(location) > 1:
        subject += f" item {int(location[1]) + 1}"
    if field_name not in _NOT_ECHOED and isinstance(value, str | int | float):
        subject += f" ({value!r})" if len(location) > 1 else f"={value!r}"
    problem = message.removeprefix("Value error, ")
    problem = problem[:1].lower() + problem[1:]
    example = setting_example(field_name)
    suffix = f" (example: {variable}={example})" if example is not None else ""
    return f"{subject}: {problem}{suffix}"


def setting_example(field_name: str) -> str | None:
    """A valid value of a setting, as it would be written in the environment."""
    field = Settings.model_fields[field_name]
    if field.examples:
        return str(field.examples[0])
    default = field.get_default(call_default_factory=True)
    if isinstance(default, bool):
        return str(default).lower()
    if default is None or default == []:
        return None
    return str(default)
