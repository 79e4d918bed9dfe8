"""The `loom` command line: serve, worker, run, db upgrade, executions prune, token create,
secrets rotate, export, import, export-schema.

Settings are read once as a command starts: a bad `LOOM_*` value stops every command with
one line naming it. Every command that opens the database says which one on stderr;
only `serve` and `db upgrade` create a missing SQLite file unasked, because a token or a
rotation written to a new, empty database is lost on the server that the user meant.

Over 400 lines, but one cohesive thing: the `loom` command line, one small function per command.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import click

from server.settings import InvalidSettingsError, Settings, load_settings

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from engine.validation import Problem
    from storage.accounts import Principal
    from storage.db import Database

# Commands import what they use when they run: `loom run` needs no database or web server,
# and should not pay for importing them.

T = TypeVar("T")
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class CommandError(click.ClickException):
    """A one-line refusal on stderr (`Error: ...`), exit status 1."""


@click.group(context_settings=CONTEXT)
def cli() -> None:
    """Loom: workflow automation over GraphQL.

    Configuration comes from LOOM_* environment variables and a .env file in the current
    directory (docs/operations.md lists them).
    """


def pass_settings(command: Callable[..., T]) -> Callable[..., T]:
    """Like `click.pass_obj`, with the settings as the first argument: read when the command
    runs (so `--help` works whatever the environment holds), a bad value a one-line error."""

    def with_settings(*args: Any, **kwargs: Any) -> T:
        try:
            settings = load_settings()
        except InvalidSettingsError as exc:
            raise CommandError(str(exc)) from exc
        return command(settings, *args, **kwargs)

    return functools.update_wrapper(with_settings, command)


# How long a process ending waits for its spans to be exported.
TRACING_SHUTDOWN_S = 3.0


def _configure_logging(settings: Settings, process: str | None = None) -> None:
    """Logging as the settings say and, for a `process` that serves or runs executions
    (`api`, `worker`), tracing."""
    from server.telemetry import configure_logging, configure_tracing

    configure_logging(settings)
    if process is not None:
        configure_tracing(settings, process)


def _stop_tracing() -> None:
    """Export the spans still pending as the process ends, waiting for the collector at most
    a few seconds (a stopping process must not outlast its grace period)."""
    from engine import tracing

    tracing.shutdown(timeout_s=TRACING_SHUTDOWN_S)


def _require_distributed(settings: Settings) -> None:
    from server.running import DistributedModeError, require_distributed_settings

    try:
        require_distributed_settings(settings)
    except DistributedModeError as exc:
        raise CommandError(str(exc)) from exc


def _announce_database(settings: Settings, *, create: bool, refusal: str = "") -> None:
    """Say on stderr which database the command opens. A missing SQLite file is created
    only when `create` is set; otherwise the command refuses, the message ending in
    `refusal`."""
    if settings.log_format == "json" and logging.getLogger().handlers:  # a JSON line too
        logging.getLogger("loom.cli").info("database: %s", settings.database_label())
    else:
        click.echo(f"database: {settings.database_label()}", err=True)
    path = settings.sqlite_path()
    if not create and path is not None and not path.exists():
        raise CommandError(
            f"no database at {path}: run this where `loom serve` runs, or set LOOM_DATA_DIR "
            f"or LOOM_DATABASE_URL to the server's database{refusal}"
        )


def _run(settings: Settings, work: Coroutine[Any, Any, T]) -> T:
    """Run `work`; a database that cannot be reached or opened is one line, not a trace."""
    from sqlalchemy.exc import DBAPIError

    try:
        return asyncio.run(work)
    except InvalidSettingsError as exc:  # a setting checked against what is installed
        raise CommandError(str(exc)) from exc
    except (DBAPIError, OSError) as exc:
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        detail = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        raise CommandError(
            f"cannot use the database {settings.database_label()}: {detail}"
        ) from exc


def _on_database(
    settings: Settings,
    work: Callable[[Database], Awaitable[T]],
    *,
    create: bool,
    refusal: str = "",
) -> T:
    """Announce the database, open it, run `work` on it and close it."""
    _announce_database(settings, create=create, refusal=refusal)

    async def run() -> T:
        database = settings.database()
        try:
            return await work(database)
        finally:
            await database.dispose()

    return _run(settings, run())


@cli.command(short_help="Serve the API (migrating the database first).")
@click.option("--host", metavar="HOST", help="Interface to listen on (LOOM_HOST).")
@click.option(
    "--port", type=click.IntRange(1, 65535), metavar="PORT", help="Port to listen on (LOOM_PORT)."
)
@pass_settings
def serve(settings: Settings, host: str | None, port: int | None) -> None:
    """Migrate the database, make sure an admin exists, and serve the API."""
    from server.process import tune_gc

    # Before the imports: with Python's default, collecting the young objects that importing
    # the storage layer and the app creates cost a start about 100 ms.
    tune_gc(settings.gc_threshold)
    from storage import accounts
    from storage.migrate import upgrade

    host = host or settings.host
    port = port or settings.port
    if settings.redis_url:
        _require_distributed(settings)
    _configure_logging(settings, "api")
    metrics_server = None
    if settings.metrics_port is not None:
        # Bound before anything else is done, so that a port in use (or a host that is not
        # this machine's) is a one-line error, not uvicorn's lifespan traceback.
        from server.observability import listen

        try:
            metrics_server = listen(settings)
        except InvalidSettingsError as exc:
            raise CommandError(str(exc)) from exc

    async def prepare(database: Database) -> str | None:
        await upgrade(database)
        admin_token = settings.admin_token.get_secret_value() if settings.admin_token else None
        return await accounts.bootstrap_admin(database, admin_token)

    new_token = _on_database(settings, prepare, create=True)
    mode = "distributed (Redis)" if settings.redis_url else "embedded (no Redis)"
    click.echo(f"Loom {mode}")
    click.echo(f"GraphiQL:  http://{host}:{port}/graphql")
    if new_token is not None:
        click.echo(f"Admin token (shown once, keep it): {new_token}")
    click.echo(
        "Authenticate with the header  Authorization: Bearer <token>  "
        "(in GraphiQL: the Headers tab). New tokens: loom token create --user NAME"
    )
    import uvicorn

    from engine.node_types import load_registry
    from server.app import create_app
    from server.process import freeze_startup_objects
    from server.telemetry import uvicorn_log_config

    # Loaded here, not in the app factory, so that a setting naming node types that are not
    # installed is a one-line error, not uvicorn's traceback.
    registry = load_registry()
    try:
        settings.check_disabled_node_types(registry)
    except InvalidSettingsError as exc:
        raise CommandError(str(exc)) from exc

    def built_app() -> Starlette:
        app = create_app(settings, registry=registry, metrics_server=metrics_server)
        freeze_startup_objects()
        return app

    try:
        uvicorn.run(
            built_app,
            factory=True,
            host=host,
            port=port,
            log_level=settings.log_level,
            log_config=uvicorn_log_config(settings),
            access_log=False,  # server/telemetry.py writes Loom's (LOOM_ACCESS_LOG)
            ws_per_message_deflate=settings.ws_compression,
        )
    finally:
        _stop_tracing()


@cli.command(short_help="Run executions from the queue (distributed mode).")
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    metavar="N",
    help="Executions run at once (LOOM_WORKER_CONCURRENCY).",
)
@pass_settings
def worker(settings: Settings, concurrency: int | None) -> None:
    """Run executions from the queue (distributed mode).

    Needs LOOM_REDIS_URL and LOOM_SECRET_KEY. SIGTERM stops it gracefully: running nodes may
    finish within LOOM_SHUTDOWN_GRACE_S.
    """
    from server.process import tune_gc
    from server.worker import run_worker

    _require_distributed(settings)
    _configure_logging(settings, "worker")
    tune_gc(settings.gc_threshold)
    _announce_database(settings, create=False, refusal=" (`loom db upgrade` creates it)")
    try:
        _run(settings, run_worker(settings, concurrency or settings.worker_concurrency))
    finally:
        _stop_tracing()


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.argument("revision", default="head")
@pass_settings
def db_upgrade(settings: Settings, revision: str) -> None:
    """Apply database migrations up to REVISION (default: the latest), creating the
    database if it does not exist."""
    from storage.migrate import upgrade

    async def work(database: Database) -> None:
        await upgrade(database, revision)

    _on_database(settings, work, create=True)
    click.echo(f"database at {revision}")


@cli.group()
def executions() -> None:
    """Executions: pruning old ones."""


@executions.command("prune")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@click.option(
    "--vacuum",
    is_flag=True,
    help="SQLite: first switch the file to incremental auto-vacuum if it is not (a full "
    "VACUUM, once), so that what is pruned gives its space back. Stop the server first.",
)
@pass_settings
def executions_prune(settings: Settings, dry_run: bool, vacuum: bool) -> None:
    """Delete the ended executions older than the retention settings allow (LOOM_EXECUTIONS_*
    and each workflow's settings), with their node runs, payloads and events."""
    from storage import retention
    from storage.migrate import current_revision, head_revision

    async def work(database: Database) -> retention.PruneRecord | None:
        if await current_revision(database) != head_revision():
            raise CommandError(
                f"the database {settings.database_label()} is not at the latest schema: run "
                "`loom db upgrade` first"
            )
        if vacuum and not dry_run and await retention.ensure_incremental_vacuum(database):
            click.echo("switched the SQLite file to incremental auto-vacuum", err=True)
        return await retention.prune(database, settings.retention_policy(), dry_run=dry_run)

    record = _on_database(settings, work, create=False)
    if record is None:
        raise CommandError("another process is pruning now; try again later")
    verb = "would delete" if dry_run else "deleted"
    seconds = (record.finished_at - record.started_at).total_seconds()
    click.echo(f"{verb} {record.executions_deleted} executions in {seconds:.1f} s")
    for table, count in record.rows_deleted.items():
        click.echo(f"  {table}: {count}")


@cli.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@click.option("--user", required=True, metavar="NAME", help="User name; created if missing.")
@click.option("--admin", is_flag=True, help="Make the user an admin.")
@click.option(
    "--name", default="cli", show_default=True, metavar="TEXT", help="What the token is for."
)
@click.option(
    "--create-database",
    is_flag=True,
    help="Create the database if it does not exist (otherwise the command refuses).",
)
@pass_settings
def token_create(
    settings: Settings, user: str, admin: bool, name: str, create_database: bool
) -> None:
    """Print a new API token for USER (shown once)."""
    from storage import accounts
    from storage.errors import DuplicateNameError
    from storage.migrate import current_revision, upgrade

    if settings.sqlite_path() is None and settings.resolved_database_url().startswith("sqlite"):
        raise CommandError(
            "the database is in memory: a token made there would be gone when this command "
            "ends; set LOOM_DATA_DIR or LOOM_DATABASE_URL to the server's database"
        )

    async def work(database: Database) -> str:
        if not create_database and await current_revision(database) is None:
            raise CommandError(
                f"the database {settings.database_label()} holds no Loom schema: point "
                "LOOM_DATABASE_URL at the server's database, or pass --create-database to "
                "start a new one"
            )
        await upgrade(database)
        role = accounts.ROLE_ADMIN if admin else accounts.ROLE_MEMBER
        return await accounts.create_user_with_token(database, user, role, name)

    try:
        new_token = _on_database(
            settings,
            work,
            create=create_database,
            refusal=", or pass --create-database to start a new one",
        )
    except DuplicateNameError as exc:
        raise CommandError(str(exc)) from exc
    click.echo(new_token)


@cli.group()
def secrets() -> None:
    """Credential encryption keys."""


@secrets.command("rotate")
@pass_settings
def secrets_rotate(settings: Settings) -> None:
    """Re-encrypt every credential under LOOM_SECRET_KEY.

    Roll out the new key first with the old one in LOOM_PREVIOUS_SECRET_KEYS (every process
    then reads both), run this, then drop the old key.
    """
    from storage.credentials import rotate_all
    from storage.migrate import upgrade
    from storage.secrets import CredentialDecryptionError, SecretKeyError

    box = settings.secret_box()
    if box is None:
        raise CommandError("LOOM_SECRET_KEY is not set")

    async def work(database: Database) -> int:
        await upgrade(database)
        return await rotate_all(database, box)

    try:
        count = _on_database(
            settings, work, create=False, refusal=" (a new one has no credentials to rotate)"
        )
    except (SecretKeyError, CredentialDecryptionError) as exc:
        raise CommandError(str(exc)) from exc
    click.echo(f"re-encrypted {count} credential(s) under the current key")


@cli.group("node-types")
def node_types_group() -> None:
    """Installed node types and the packages that provide them."""


@node_types_group.command("list")
def node_types_list() -> None:
    """Every node type (latest version; all versions in brackets), then the packages that
    provide them, with the reason any was skipped."""
    from engine.node_types import load_registry

    registry = load_registry()
    for node_type in registry.latest():
        versions = ",".join(map(str, registry.versions(node_type.name)))
        catalog = node_type.catalog
        place = " / ".join(filter(None, (catalog.category, catalog.subcategory)))
        old = "  (deprecated)" if node_type.deprecated else ""
        click.echo(f"{node_type.name:<28} v{node_type.version} [{versions}]  {place}{old}")
    click.echo("")
    for package in registry.packages:
        origin = f"{package.distribution} {package.version}" if package.distribution else "?"
        if package.error is None:
            click.echo(f"{package.entry_point}  ({origin}): {len(package.node_types)} type(s)")
        else:
            click.echo(f"{package.entry_point}  ({origin}): SKIPPED: {package.error}")


@node_types_group.command("show")
@click.argument("name")
@click.option("--version", "version", type=int, default=None, help="Default: the latest.")
def node_types_show(name: str, version: int | None) -> None:
    """One node type as JSON: its ports, parameters schema and catalog."""
    import json

    from engine.node_types import load_registry

    registry = load_registry()
    node_type = registry.get(name, version)
    if node_type is None:
        known = registry.versions(name)
        if not known:
            raise CommandError(f"no node type {name!r} (see: loom node-types list)")
        raise CommandError(f"node type {name!r} has no version {version} (it has {known})")
    catalog = node_type.catalog
    described = {
        "name": node_type.name,
        "version": node_type.version,
        "versions": registry.versions(name),
        "displayName": node_type.display_name,
        "description": node_type.description,
        "group": node_type.group.value,
        "deprecated": node_type.deprecated,
        "category": catalog.category,
        "subcategory": catalog.subcategory or None,
        "icon": catalog.icon or None,
        "documentationUrl": catalog.documentation_url or None,
        "subtitle": catalog.subtitle or None,
        "inputs": [port.name for port in node_type.inputs],
        "outputs": [port.name for port in node_type.outputs],
        "credentialKinds": list(node_type.credential_kinds),
        "parametersSchema": node_type.parameters_schema,
        "parameterHints": [
            {
                "parameter": hint.parameter,
                "placeholder": hint.placeholder or None,
                "widget": hint.widget.value if hint.widget else None,
                "showWhen": {key: list(values) for key, values in hint.show_when.items()} or None,
            }
            for hint in catalog.hints
        ],
        "defaultParameters": node_type.default_parameters(),
    }
    click.echo(json.dumps(described, indent=2, ensure_ascii=False))


async def _principal(database: Database, user: str) -> Principal:
    """The user `--user` names, as the API would see them."""
    from storage import accounts

    async with database.session() as session:
        found = await accounts.get_user_by_name(session, user)
        if found is None:
            raise CommandError(f"no user named {user!r}")
        return await accounts.principal_for_user(session, found)


def _problem_line(problem: Problem) -> str:
    """A problem as `loom run` lists it: where, what, and its code."""
    where = f"node {problem.node_id!r}" if problem.node_id else (problem.field or "workflow")
    if problem.node_id and problem.field:
        where += f" {problem.field}"
    return f"  - {where}: {problem.message} [{problem.code}]"


@cli.command("export", short_help="Write a workflow as a JSON document.")
@click.argument("workflow_id")
@click.option(
    "--user",
    metavar="NAME",
    help="Export as this user: one of their workflows (default: any workflow).",
)
@click.option(
    "--version",
    "version",
    type=click.IntRange(min=1),
    metavar="N",
    help="The snapshot of version N (default: the draft).",
)
@click.option(
    "-o",
    "--output",
    default="-",
    show_default=True,
    metavar="FILE",
    help="File to write; - for stdout.",
)
@pass_settings
def export_workflow(
    settings: Settings, workflow_id: str, user: str | None, version: int | None, output: str
) -> None:
    """Write the workflow WORKFLOW_ID (its draft, or a version) as the JSON document that
    `loom import` and the API's importWorkflow read. Credentials are named, never
    exported."""
    import json

    from storage import workflows
    from storage.errors import NotFoundError
    from storage.workflow_documents import export_document_of

    async def work(database: Database) -> dict[str, Any]:
        if user is not None:
            workspace_ids = (await _principal(database, user)).workspace_ids
        else:
            async with database.session() as session:
                workspace = await workflows.workspace_of(session, workflow_id)
            workspace_ids = () if workspace is None else (workspace,)
        document, _ = await export_document_of(database, workflow_id, version, workspace_ids)
        return document

    try:
        document = _on_database(settings, work, create=False)
    except NotFoundError as exc:
        raise CommandError(str(exc) + ("" if user is None else f" (for user {user!r})")) from exc
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if output == "-":
        click.echo(text, nl=False)
        return
    try:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from exc
    click.echo(f"wrote {output}", err=True)


@cli.command("import", short_help="Create a workflow from a JSON document.")
@click.argument("document_file", metavar="FILE")
@click.option(
    "--user",
    metavar="NAME",
    help="Import as this user, into their personal workspace unless --workspace says another "
    "of theirs.",
)
@click.option("--workspace", "workspace_id", metavar="ID", help="Workspace to create it in.")
@pass_settings
def import_workflow(
    settings: Settings, document_file: str, user: str | None, workspace_id: str | None
) -> None:
    """Create a workflow (an unpublished draft) from the document in FILE, as written by
    `loom export` or the API's exportWorkflow, and print its id. Give --user, --workspace
    or both.

    Every problem that refuses the document is listed (exit status 2, nothing stored). Node
    types not installed and credentials the workspace has none of that name and kind of
    are listed as the new draft's node issues.
    """
    from pathlib import Path

    from engine import json_depth
    from engine.node_types import load_registry
    from engine.validation import GraphLimits, Problem
    from storage import accounts
    from storage.models import Workflow
    from storage.types import storable
    from storage.workflow_documents import import_document

    if user is None and workspace_id is None:
        raise CommandError("give --user NAME, --workspace ID or both: where to create it")
    path = Path(document_file)
    try:
        data = json_depth.loads(path.read_bytes())
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except json_depth.JsonTooDeep as exc:
        raise CommandError(f"{path} is {exc}") from exc
    except ValueError as exc:
        raise CommandError(f"{path} is not valid JSON: {exc}") from exc

    async def work(database: Database) -> Workflow | list[Problem]:
        principal = None if user is None else await _principal(database, user)
        if principal is None:
            target = str(workspace_id)
            async with database.session() as session:
                found = storable(target) and await accounts.workspaces_by_ids(session, [target])
            if not found:
                raise CommandError(f"workspace {target!r} not found")
        else:
            target = workspace_id or principal.personal_workspace_id
            if target not in principal.workspace_ids:
                raise CommandError(f"workspace {target!r} not found (for user {user!r})")
        return await import_document(
            database,
            load_registry(),
            GraphLimits(
                max_nodes=settings.max_graph_nodes, max_pinned_bytes=settings.max_pinned_bytes
            ),
            data,
            workspace_id=target,
            created_by=None if principal is None else principal.user_id,
        )

    imported = _on_database(settings, work, create=False)
    if isinstance(imported, list):
        count = f"{len(imported)} problem" + ("s" if len(imported) > 1 else "")
        click.echo(f"Error: {path} cannot be imported ({count}); nothing was stored", err=True)
        for problem in imported:
            click.echo(_problem_line(problem), err=True)
        raise SystemExit(2)
    issues = [
        Problem.from_json(issue)
        for node in imported.nodes
        for issue in imported.node_issues.get(node["id"], [])
    ]
    click.echo(f"imported {imported.name!r} as workflow {imported.id} (draft version 1)", err=True)
    if issues:
        click.echo(f"{len(issues)} node issue(s) to fix before it can run:", err=True)
        for problem in issues:
            click.echo(_problem_line(problem), err=True)
    click.echo(imported.id)


@cli.command("export-schema")
@click.option(
    "-o",
    "--output",
    default="schema.graphql",
    show_default=True,
    metavar="FILE",
    help="File to write; - for stdout.",
)
@pass_settings
def export_schema(_: Settings, output: str) -> None:
    """Write the GraphQL schema (SDL) that the code defines."""
    # Reads no setting, but like every command it refuses a configuration that others would.
    from schema.root import build_schema

    sdl = build_schema().as_str() + "\n"
    if output == "-":
        click.echo(sdl, nl=False)
        return
    with open(output, "w", encoding="utf-8") as handle:
        handle.write(sdl)
    click.echo(f"wrote {output}")


@cli.command("run", short_help="Run a workflow file here, without a server.")
@click.argument("workflow")
@click.option(
    "--input",
    "input_json",
    metavar="JSON",
    help="The run's input, a JSON object (default: the file's `input`).",
)
@click.option("-q", "--quiet", is_flag=True, help="Leave out node-by-node progress.")
@pass_settings
def run(settings: Settings, workflow: str, input_json: str | None, quiet: bool) -> None:
    """Run the workflow file WORKFLOW in this process and print its output.

    WORKFLOW is a JSON file of the shape of WorkflowInput. No server and no database are
    needed.
    """
    from rich.console import Console

    from server.process import tune_gc
    from server.run_command import run_workflow_file

    tune_gc(settings.gc_threshold)
    raise SystemExit(
        run_workflow_file(
            workflow, input_json, Console(stderr=True), quiet=quiet, settings=settings
        )
    )


def main() -> None:
    cli(prog_name="loom")
