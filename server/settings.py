"""Loom's configuration: one settings object, read once from `LOOM_*` variables and `.env`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from engine.nodes.base import NodeResources
    from storage.db import Database
    from storage.models import Execution
    from storage.secrets import SecretBox


class Settings(BaseSettings):
    """Every knob Loom has. Passed down explicitly; nothing reads the environment again."""

    model_config = SettingsConfigDict(env_prefix="LOOM_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        default=Path("data"), description="Where embedded mode keeps its SQLite file and keys."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; unset means a SQLite file in the data directory. "
        "postgresql:// URLs use asyncpg.",
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
    redis_url: str | None = Field(
        default=None, description="Redis URL; unset means embedded mode (no Redis)."
    )
    http_allowed_networks: list[str] = Field(
        default_factory=list,
        description="Networks the HTTP Request node may reach although they are private or "
        'local (JSON list, e.g. ["10.1.0.0/16"]); everything not globally routable is refused '
        "otherwise.",
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
    port: int = 8000
    log_level: str = "info"

    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, description="Largest accepted HTTP request body (413 above)."
    )
    max_graph_nodes: int = Field(default=2000, description="Largest workflow, in nodes.")
    max_query_depth: int = 12
    max_query_tokens: int = 5000
    max_query_aliases: int = 30
    max_page_size: int = 100
    graphiql: bool = Field(default=True, description="Serve GraphiQL to browsers at /graphql.")
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to open websockets; empty allows same-origin only.",
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
        default=256, description="Compiled workflow versions kept per process (LRU)."
    )
    max_node_concurrency: int = Field(
        default=16, description="Nodes of one execution that may run at the same time."
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
    )
    token_cache_s: float = Field(
        default=5.0, description="How long a verified API token is trusted without the database."
    )

    def database(self) -> Database:
        """The database these settings point to, with their pool options."""
        from storage.db import Database  # imported late: the CLI starts without SQLAlchemy

        return Database(
            self.resolved_database_url(),
            pre_ping=self.database_pre_ping,
            recycle_s=self.database_recycle_s,
        )

    @field_validator("http_allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for network in value:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
        return value

    def node_resources(
        self,
        database: Database,
        box: SecretBox | None,
        submit: Callable[[Execution], Awaitable[None]] | None = None,
    ) -> NodeResources | None:
        """The HTTP client, credentials and sub-workflow calls (which hand the executions
        they create to `submit`) lent to nodes; None without a secret key."""
        from engine.http_client import HttpClient, NetworkPolicy
        from engine.nodes.base import NodeResources
        from storage.credentials import DatabaseCredentials
        from storage.subworkflows import DatabaseWorkflowCaller

        if box is None:
            return None
        policy = NetworkPolicy.from_strings(self.http_allowed_networks)
        return NodeResources(
            HttpClient(policy),
            DatabaseCredentials(database, box),
            DatabaseWorkflowCaller(database, self.max_subworkflow_depth, submit),
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
