"""The `loom` command line: serve, run, db upgrade, token create, export-schema."""

from __future__ import annotations

import asyncio
import logging

import typer

from server.settings import Settings

# Commands import what they use when they run: `loom run` needs no database or web server,
# and should not pay for importing them.

cli = typer.Typer(help="Loom: workflow automation over GraphQL.", no_args_is_help=True)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
token_cli = typer.Typer(help="API tokens.", no_args_is_help=True)
secrets_cli = typer.Typer(help="Credential encryption keys.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(token_cli, name="token")
cli.add_typer(secrets_cli, name="secrets")


async def _prepare(settings: Settings) -> str | None:
    from storage import accounts
    from storage.migrate import upgrade

    database = settings.database()
    try:
        await upgrade(database)
        admin_token = settings.admin_token.get_secret_value() if settings.admin_token else None
        return await accounts.bootstrap_admin(database, admin_token)
    finally:
        await database.dispose()


@cli.command()
def serve(
    host: str | None = typer.Option(None, help="Interface to listen on (LOOM_HOST)."),
    port: int | None = typer.Option(None, help="Port to listen on (LOOM_PORT)."),
) -> None:
    """Migrate the database, make sure an admin exists, and serve the API."""
    settings = Settings()
    host = host or settings.host
    port = port or settings.port
    if settings.redis_url:
        from server.worker import DistributedModeError, require_distributed_settings

        try:
            require_distributed_settings(settings)
        except DistributedModeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s %(message)s"
    )
    # Alembic announces each of its plugins at INFO; the migrations it runs stay visible.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    new_token = asyncio.run(_prepare(settings))
    mode = "distributed (Redis)" if settings.redis_url else "embedded (no Redis)"
    typer.echo(f"Loom {mode}, database: {settings.resolved_database_url().split('@')[-1]}")
    typer.echo(f"GraphiQL:  http://{host}:{port}/graphql")
    if new_token is not None:
        typer.echo(f"Admin token (shown once, keep it): {new_token}")
    typer.echo(
        "Authenticate with the header  Authorization: Bearer <token>  "
        "(in GraphiQL: the Headers tab). New tokens: loom token create --user NAME"
    )
    import uvicorn

    from server.app import create_app
    from server.process import tune_gc

    tune_gc(settings.gc_threshold)

    uvicorn.run(
        lambda: create_app(settings),
        factory=True,
        host=host,
        port=port,
        log_level=settings.log_level,
        ws_per_message_deflate=settings.ws_compression,
    )


@cli.command()
def worker(
    concurrency: int | None = typer.Option(
        None, "--concurrency", "-c", help="Executions run at once (LOOM_WORKER_CONCURRENCY)."
    ),
) -> None:
    """Run executions from the queue (distributed mode: needs LOOM_REDIS_URL and
    LOOM_SECRET_KEY). SIGTERM stops it gracefully."""
    from server.process import tune_gc
    from server.worker import DistributedModeError, run_worker

    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    tune_gc(settings.gc_threshold)
    try:
        asyncio.run(run_worker(settings, concurrency or settings.worker_concurrency))
    except DistributedModeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@db_cli.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply database migrations up to REVISION (the latest by default)."""
    from storage.migrate import upgrade

    settings = Settings()

    async def run() -> None:
        database = settings.database()
        try:
            await upgrade(database, revision)
        finally:
            await database.dispose()

    asyncio.run(run())
    typer.echo(f"database at {revision}")


@token_cli.command("create")
def token_create(
    user: str = typer.Option(..., "--user", help="User name; created if missing."),
    admin: bool = typer.Option(False, "--admin", help="Make the user an admin."),
    name: str = typer.Option("cli", "--name", help="What the token is for."),
) -> None:
    """Print a new API token for USER (shown once)."""
    from storage import accounts
    from storage.errors import DuplicateNameError
    from storage.migrate import upgrade

    settings = Settings()

    async def run() -> str:
        database = settings.database()
        try:
            await upgrade(database)
            role = accounts.ROLE_ADMIN if admin else accounts.ROLE_MEMBER
            return await accounts.create_user_with_token(database, user, role, name)
        finally:
            await database.dispose()

    try:
        token = asyncio.run(run())
    except DuplicateNameError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(token)


@secrets_cli.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt every credential under LOOM_SECRET_KEY. Roll out the new key first with
    the old one in LOOM_PREVIOUS_SECRET_KEYS (every process then reads both), run this, then
    drop the old key."""
    from storage.credentials import rotate_all
    from storage.migrate import upgrade
    from storage.secrets import CredentialDecryptionError, SecretKeyError

    settings = Settings()

    async def run() -> int:
        box = settings.secret_box()
        if box is None:
            raise SecretKeyError("LOOM_SECRET_KEY is not set")
        database = settings.database()
        try:
            await upgrade(database)
            return await rotate_all(database, box)
        finally:
            await database.dispose()

    try:
        count = asyncio.run(run())
    except (SecretKeyError, CredentialDecryptionError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"re-encrypted {count} credential(s) under the current key")


@cli.command("export-schema")
def export_schema(
    output: str = typer.Option(
        "schema.graphql", "--output", "-o", help="File to write; - for stdout."
    ),
) -> None:
    """Write the GraphQL schema (SDL) that the code defines."""
    from schema.root import build_schema

    sdl = build_schema().as_str() + "\n"
    if output == "-":
        typer.echo(sdl, nl=False)
        return
    with open(output, "w", encoding="utf-8") as handle:
        handle.write(sdl)
    typer.echo(f"wrote {output}")


@cli.command("run")
def run(
    workflow: str = typer.Argument(..., help="Workflow JSON file (the shape of WorkflowInput)."),
    input_json: str | None = typer.Option(
        None, "--input", help="The run's input, a JSON object; default: the file's `input`."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Leave out node-by-node progress."),
) -> None:
    """Run a workflow file in this process (no server, no database) and print its output."""
    from rich.console import Console

    from server.process import tune_gc
    from server.run_command import run_workflow_file

    settings = Settings()
    tune_gc(settings.gc_threshold)
    console = Console(stderr=True)
    raise typer.Exit(
        run_workflow_file(workflow, input_json, console, quiet=quiet, settings=settings)
    )


def main() -> None:
    cli()
