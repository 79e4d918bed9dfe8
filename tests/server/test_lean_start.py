"""An embedded `loom serve` imports only what it needs: no arq or Redis (distributed mode),
no Alembic when the database is already migrated, no aiohttp until an HTTP Request node
runs, no cryptography until a credential is used, no jsonschema or jsonschema-rs until a
workflow, a setting, a credential or a plugin's schema is checked, no croniter until a
schedule is read, no tenacity until a node retries, no regex until a pattern is compiled, no
rich (the CLI's `loom run` output), no OpenTelemetry or python-json-logger unless tracing or
JSON logs are on."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from engine.node_types import BUILTIN_ENTRY_POINT
from tests.distributed.cluster import free_port
from tests.server.loom_process import LOOM, loom_env

# Imported only when used; each has a test of the feature that needs it (see the module
# that imports it).
LAZY = (
    "arq",
    "redis",
    "alembic",
    "aiohttp",
    "cryptography",
    "jsonschema",
    "jsonschema_rs",
    "croniter",
    "tenacity",
    "regex",
    "rich",
    "py_mini_racer",
    "opentelemetry",  # LOOM_TRACING=otlp (tests/api/test_tracing.py)
    "pythonjsonlogger",  # LOOM_LOG_FORMAT=json (tests/server/test_logs.py)
)


def _imported(importtime_log: str) -> set[str]:
    """The modules named by `-X importtime` lines (PYTHONPROFILEIMPORTTIME)."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in importtime_log.splitlines()
        if line.startswith("import time:") and "|" in line and "[us]" not in line
    }


def _serve_until_idle(data_dir: Path, *, with_test_plugin: bool = False) -> set[str]:
    """Start a real `loom serve`, wait until `/readyz` answers and a second more, and return
    what it had imported then (top-level packages and modules)."""
    port = free_port()
    log = data_dir / "importtime.log"
    env = loom_env(
        LOOM_DATA_DIR=str(data_dir),
        LOOM_PORT=str(port),
        LOOM_LOG_LEVEL="warning",
        PYTHONPROFILEIMPORTTIME="1",
    )
    if not with_test_plugin:  # tests/conftest.py puts it on PYTHONPATH
        env.pop("PYTHONPATH", None)
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [str(LOOM), "serve"],
            cwd=data_dir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "loom serve did not become ready"
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                        break
                except OSError:
                    time.sleep(0.05)
            time.sleep(1)  # idle: whatever the lifespan's background tasks import
            imported = _imported(log.read_text())
        finally:
            process.terminate()
            process.wait(timeout=30)
    return {name.split(".")[0] for name in imported}


@pytest.mark.timeout(180)
def test_an_embedded_serve_on_a_migrated_database_imports_nothing_it_does_not_use(tmp_path):
    first = _serve_until_idle(tmp_path)  # creates and migrates the database
    assert "alembic" in first  # the start that migrates needs it: the check below can fail
    assert _serve_until_idle(tmp_path) & set(LAZY) == set()


@pytest.mark.timeout(120)
def test_a_plugin_still_has_its_parameters_schema_checked_at_start(tmp_path):
    _serve_until_idle(tmp_path)
    assert "jsonschema" in _serve_until_idle(tmp_path, with_test_plugin=True)


def test_the_builtin_entry_point_is_the_one_trusted_without_a_schema_check():
    values = {ep.name: ep.value for ep in entry_points(group="loom.node_types")}
    assert values["builtin"] == BUILTIN_ENTRY_POINT
