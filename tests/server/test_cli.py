"""The `loom` command line as a real process: help text, and which database it opens."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from server.cli import cli
from tests.conftest import REDIS_URL
from tests.server.loom_process import run_loom, start_loom


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            paths += _command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


def test_every_help_text_reads_like_a_normal_command_line(tmp_path: Path) -> None:
    paths = _command_paths(cli)
    assert ("token", "create") in paths and ("run",) in paths
    # Help is there whatever the configuration: a bad setting does not hide it.
    started = [start_loom(*path, "--help", cwd=tmp_path, LOOM_PORT="eighty") for path in paths]
    helps = {ran.args[:-1]: ran for ran in (process.wait() for process in started)}
    for path, ran in helps.items():
        assert ran.code == 0 and ran.stderr == "", ran
        text = ran.stdout
        assert text.startswith(f"Usage: {' '.join(('loom', *path))} [OPTIONS]"), text
        # No type placeholders, braces or drawn boxes.
        for odd in ("<bool>", "<str>", "<int>", "{", "}", "╭", "│"):
            assert odd not in text, (odd, text)
        assert "  -h, --help  " in text or re.search(r"-h, --help +Show this message", text)
        # A group lists one command a line: no summary broken over two lines.
        if "Commands:" in text:
            listed = text.split("Commands:\n", 1)[1].strip("\n").splitlines()
            for line in listed:
                assert re.fullmatch(r"  [a-z-]+ {2,}\S.*", line), (line, text)
    assert helps[("run",)].stdout.splitlines()[0] == "Usage: loom run [OPTIONS] WORKFLOW"
    assert "Usage: loom db upgrade [OPTIONS] [REVISION]" in helps[("db", "upgrade")].stdout
    token_help = helps[("token", "create")].stdout
    assert re.search(r"^  --user NAME +User name", token_help, re.MULTILINE), token_help
    assert re.search(r"^  --admin +Make the user an admin", token_help, re.MULTILINE)
    assert "--create-database" in token_help


def _one_error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


def test_token_create_refuses_to_create_a_database_unless_told_to(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    database = elsewhere / "data" / "loom.db"

    refused = run_loom("token", "create", "--user", "carol", cwd=elsewhere)
    assert refused.code == 1 and refused.stdout == ""
    assert f"database: sqlite:///{database}" in refused.stderr.splitlines()
    error = _one_error_line(refused.stderr)
    assert f"no database at {database}" in error and "--create-database" in error
    assert list(elsewhere.iterdir()) == [], "nothing is created"

    created = run_loom("token", "create", "--user", "carol", "--create-database", cwd=elsewhere)
    assert created.code == 0, created.stderr
    assert created.stdout.startswith("loom_")
    assert created.stderr.splitlines() == [f"database: sqlite:///{database}"]
    assert database.exists()


def test_a_command_run_from_another_directory_uses_the_database_it_is_pointed_to(
    tmp_path: Path,
) -> None:
    server_dir, other_dir = tmp_path / "server", tmp_path / "other"
    server_dir.mkdir()
    other_dir.mkdir()
    upgraded = run_loom("db", "upgrade", cwd=server_dir)
    assert upgraded.code == 0, upgraded.stderr
    database = server_dir / "data" / "loom.db"
    assert upgraded.stderr.splitlines() == [f"database: sqlite:///{database}"]

    token = run_loom(
        "token", "create", "--user", "dave", cwd=other_dir, LOOM_DATA_DIR=str(server_dir / "data")
    )
    assert token.code == 0, token.stderr
    assert token.stderr.splitlines() == [f"database: sqlite:///{database}"]
    assert list(other_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("command", "settings"),
    [
        (("secrets", "rotate"), {}),
        (("worker",), {"LOOM_REDIS_URL": REDIS_URL, "LOOM_SECRET_KEY": "k"}),
    ],
)
def test_other_database_commands_refuse_to_start_on_no_database(
    tmp_path: Path, command: tuple[str, ...], settings: dict[str, str]
) -> None:
    ran = run_loom(*command, cwd=tmp_path, **settings)
    assert ran.code == 1, ran.stderr
    database = tmp_path / "data" / "loom.db"
    assert ran.stderr.splitlines()[0] == f"database: sqlite:///{database}"
    assert f"no database at {database}" in _one_error_line(ran.stderr)
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    ran = run_loom(
        "db", "upgrade", cwd=tmp_path, LOOM_DATABASE_URL="postgresql://loom:pw@127.0.0.1:1/loom"
    )
    assert ran.code == 1
    assert ran.stderr.splitlines()[0] == "database: postgresql://loom:***@127.0.0.1:1/loom"
    assert "cannot use the database" in _one_error_line(ran.stderr)
    assert "pw" not in ran.stderr


def test_token_create_refuses_an_in_memory_database(tmp_path: Path) -> None:
    ran = run_loom("token", "create", "--user", "erin", cwd=tmp_path, LOOM_DATABASE_URL="sqlite://")
    assert ran.code == 1 and ran.stdout == ""
    assert "in memory" in _one_error_line(ran.stderr)


@pytest.mark.postgres
async def test_token_create_refuses_a_database_without_loom_schema(tmp_path: Path) -> None:
    """A PostgreSQL database with no Loom schema is the wrong one, unless told otherwise."""
    import uuid

    from sqlalchemy import text

    from storage.db import Database
    from tests.conftest import PG_URL, require_postgres

    await require_postgres()
    name = f"loom_cli_{uuid.uuid4().hex[:10]}"
    admin = Database(PG_URL)
    async with admin.engine.connect() as connection:
        connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        refused = run_loom(
            "token", "create", "--user", "frank", cwd=tmp_path, LOOM_DATABASE_URL=url
        )
        assert refused.code == 1 and refused.stdout == ""
        error = _one_error_line(refused.stderr)
        assert "holds no Loom schema" in error and "--create-database" in error
        created = run_loom(
            "token",
            "create",
            "--user",
            "frank",
            "--create-database",
            cwd=tmp_path,
            LOOM_DATABASE_URL=url,
        )
        assert created.code == 0, created.stderr
        assert created.stdout.startswith("loom_")
    finally:
        async with admin.engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        await admin.dispose()


def test_serve_refuses_to_disable_a_node_type_that_is_not_installed(tmp_path: Path) -> None:
    ran = run_loom(
        "serve", "--port", "1", cwd=tmp_path, LOOM_DISABLED_NODE_TYPES="code,htp_request"
    )
    assert ran.code == 1, ran.stderr
    assert _one_error_line(ran.stderr) == (
        "Error: LOOM_DISABLED_NODE_TYPES: 'htp_request' is not among the installed node types "
        "(`loom node-types list` lists them)"
    )


def _loom_with_users(tmp_path: Path, *users: str) -> Path:
    """A SQLite database in `tmp_path` with these users; returns the data directory."""
    assert run_loom("db", "upgrade", cwd=tmp_path).code == 0
    created = [start_loom("token", "create", "--user", user, cwd=tmp_path) for user in users]
    for ran in (process.wait() for process in created):
        assert ran.code == 0, ran.stderr
    return tmp_path / "data"


DOCUMENT = {
    "formatVersion": 1,
    "name": "Sync issues",
    "tags": ["sync"],
    "nodes": [
        {"id": "t", "name": "Start", "type": "manual_trigger"},
        {
            "id": "h",
            "name": "Fetch",
            "type": "http_request",
            "parameters": {"url": "https://example.com"},
            "credentials": {"bearer_token": {"name": "GitHub"}},
        },
    ],
    "edges": [{"source": "t", "target": "h"}],
}


def test_export_and_import_round_trip_as_real_processes(tmp_path: Path) -> None:
    import json

    _loom_with_users(tmp_path, "alice")
    (tmp_path / "in.json").write_text(json.dumps(DOCUMENT))
    first = run_loom("import", "in.json", "--user", "alice", cwd=tmp_path)
    assert first.code == 0, first.stderr
    workflow_id = first.stdout.strip()
    assert f"imported 'Sync issues' as workflow {workflow_id}" in first.stderr
    # The credential the workspace does not have is a node issue, listed as loom run lists.
    assert (
        "  - node 'h' credentials.bearer_token: no credential named 'GitHub' in this workspace"
        in first.stderr
    )
    written = run_loom("export", workflow_id, "--user", "alice", "-o", "out.json", cwd=tmp_path)
    assert written.code == 0 and written.stdout == "", written.stderr
    exported = (tmp_path / "out.json").read_text(encoding="utf-8")
    document = json.loads(exported)
    # Left out on import: the workspace has no such credential (the node issue said so).
    assert document["nodes"][1]["credentials"] == {}
    assert document["nodes"][1]["typeVersion"] == 1
    second = run_loom("import", "out.json", "--user", "alice", cwd=tmp_path)
    assert second.code == 0, second.stderr
    assert second.stdout.strip() != workflow_id
    again = run_loom("export", second.stdout.strip(), "--user", "alice", cwd=tmp_path)
    assert again.code == 0, again.stderr
    assert again.stdout == exported


def test_export_refuses_another_users_workflow_and_a_missing_version(tmp_path: Path) -> None:
    import json

    _loom_with_users(tmp_path, "alice", "bob")
    (tmp_path / "in.json").write_text(json.dumps(DOCUMENT))
    workflow_id = run_loom("import", "in.json", "--user", "alice", cwd=tmp_path).stdout.strip()
    refused = [
        start_loom("export", workflow_id, "--user", "bob", cwd=tmp_path),
        start_loom("export", workflow_id, "--user", "alice", "--version", "5", cwd=tmp_path),
        start_loom("export", workflow_id, "--user", "carol", cwd=tmp_path),
    ]
    theirs, missing, nobody = (process.wait() for process in refused)
    for ran in (theirs, missing, nobody):
        assert ran.code == 1 and ran.stdout == "", ran
    assert f"workflow {workflow_id!r} not found" in _one_error_line(theirs.stderr)
    assert f"version 5 of workflow {workflow_id!r} not found" in _one_error_line(missing.stderr)
    assert "no user named 'carol'" in _one_error_line(nobody.stderr)


def test_import_lists_every_problem_and_stores_nothing(tmp_path: Path) -> None:
    import json
    import sqlite3

    data = _loom_with_users(tmp_path, "alice")
    cyclic = {
        **DOCUMENT,
        "nodes": [
            *DOCUMENT["nodes"],
            {"id": "x", "name": 3, "type": "noop"},
            {"id": "y", "name": "Y", "type": "noop"},
        ],
        "edges": [{"source": "x", "target": "y"}, {"source": "y", "target": "x"}],
    }
    (tmp_path / "cycle.json").write_text(json.dumps(cyclic))
    (tmp_path / "newer.json").write_text(json.dumps({**DOCUMENT, "formatVersion": 2}))
    (tmp_path / "broken.json").write_text('{"formatVersion": 1,')
    started = [
        start_loom("import", name, "--user", "alice", cwd=tmp_path)
        for name in ("cycle.json", "newer.json", "broken.json", "missing.json")
    ]
    cycle, newer, broken, missing = (process.wait() for process in started)
    assert cycle.code == 2 and cycle.stdout == "", cycle
    assert "cycle.json cannot be imported (2 problems)" in _one_error_line(cycle.stderr)
    assert "  - node 'x' name: name must be text, got 3 [INVALID_DOCUMENT]" in cycle.stderr
    assert "[CYCLE]" in cycle.stderr
    assert newer.code == 2
    assert "format version 2" in newer.stderr and "[UNSUPPORTED_FORMAT_VERSION]" in newer.stderr
    assert broken.code == 1 and "not valid JSON" in _one_error_line(broken.stderr)
    assert missing.code == 1 and "cannot read missing.json" in _one_error_line(missing.stderr)
    with sqlite3.connect(data / "loom.db") as connection:
        assert connection.execute("SELECT count(*) FROM workflows").fetchone() == (0,)


def test_without_a_user_export_reads_any_workflow_and_import_needs_a_workspace(
    tmp_path: Path,
) -> None:
    import json
    import sqlite3

    data = _loom_with_users(tmp_path, "alice")
    with sqlite3.connect(data / "loom.db") as connection:
        (workspace_id,) = connection.execute("SELECT personal_workspace_id FROM users").fetchone()
    (tmp_path / "in.json").write_text(json.dumps(DOCUMENT))
    started = [
        start_loom("import", "in.json", "--workspace", workspace_id, cwd=tmp_path),
        start_loom("import", "in.json", cwd=tmp_path),
        start_loom("import", "in.json", "--workspace", "nope", cwd=tmp_path),
    ]
    imported, nowhere, unknown = (process.wait() for process in started)
    assert imported.code == 0, imported.stderr
    assert nowhere.code == 1 and "--user NAME, --workspace ID" in _one_error_line(nowhere.stderr)
    assert unknown.code == 1 and "workspace 'nope' not found" in _one_error_line(unknown.stderr)
    exported = run_loom("export", imported.stdout.strip(), cwd=tmp_path)
    assert exported.code == 0, exported.stderr
    assert json.loads(exported.stdout)["name"] == "Sync issues"
    with sqlite3.connect(data / "loom.db") as connection:
        assert connection.execute("SELECT created_by FROM workflows").fetchall() == [(None,)]
