"""The GraphQL layer sits on top: the engine, storage and the server's processes reach an
execution's lifecycle through engine/lifecycle.py, never through the resolvers; only the
modules that mount the schema import them, and `loom worker` does not load GraphQL at all."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The modules that mount the schema: the app (its per-process `Services`), the GraphQL
# endpoint (its per-request context) and its websocket frame writers.
MOUNTING_THE_SCHEMA = {"server/app.py", "server/graphql_view.py", "server/websocket_writes.py"}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_only_the_modules_mounting_the_schema_import_the_resolvers() -> None:
    modules = [
        *ROOT.glob("server/*.py"),
        *ROOT.glob("engine/**/*.py"),
        *ROOT.glob("storage/**/*.py"),
    ]
    assert len(modules) > 50  # the walk saw the packages
    strays = sorted(
        str(path.relative_to(ROOT))
        for path in modules
        if "resolvers" in _imported_packages(path)
        and str(path.relative_to(ROOT)) not in MOUNTING_THE_SCHEMA
    )
    assert not strays, f"modules importing resolvers: {strays}"


def test_the_worker_does_not_load_the_graphql_layer() -> None:
    probe = (
        "import sys, server.cli, server.worker\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}"
        " & {'strawberry', 'graphql', 'resolvers', 'schema'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]", result.stdout
