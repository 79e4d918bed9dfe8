"""The compose file: valid YAML, and the shape docs/scaling.md describes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_runs_the_api_and_workers_in_distributed_mode() -> None:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "api", "worker"}
    assert services["api"]["command"] == ["loom", "serve"]
    assert services["worker"]["command"] == ["loom", "worker"]
    for name in ("api", "worker"):
        environment = services[name]["environment"]
        assert environment["LOOM_REDIS_URL"].startswith("redis://")
        assert environment["LOOM_DATABASE_URL"].startswith("postgresql://")
        assert "LOOM_SECRET_KEY" in environment
    # Longer than the worker's default shutdown grace (30 s), so that draining can finish.
    assert services["worker"]["stop_grace_period"] == "40s"


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each Dockerfile line, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_image_keeps_data_in_a_volume_and_installs_only_the_server() -> None:
    instructions = _dockerfile_instructions()
    final_stage = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    assert ("VOLUME", "/data") in final_stage
    assert any(
        "LOOM_DATA_DIR=/data" in arguments.split() for op, arguments in final_stage if op == "ENV"
    )
    # Files written to /data after VOLUME would be discarded: ownership is set before it.
    volume = final_stage.index(("VOLUME", "/data"))
    assert any("chown loom /data" in arguments for _, arguments in final_stage[:volume])
    installs = [arguments for op, arguments in instructions if op == "RUN" and "pip" in arguments]
    assert installs == ["/opt/loom/bin/pip install --no-cache-dir ."]


# What a working copy holds besides the sources: none of it may reach the build context.
WORKING_COPY_ONLY = [
    ".venv/bin/python",
    ".venv/lib/python3.11/site-packages/x.py",
    "data/loom.db",
    "data/secret.key",
    ".git/HEAD",
    ".mypy_cache/3.11/x.json",
    ".ruff_cache/0.8/x",
    ".pytest_cache/v/cache/lastfailed",
    "server/__pycache__/cli.cpython-311.pyc",
    "engine/nodes/__pycache__/http.cpython-311.pyc",
    "tests/js/node_modules/ws/index.js",
    "tests/conftest.py",
    ".env",
    "loom_server.egg-info/PKG-INFO",
]


def test_the_build_context_holds_the_sources_and_nothing_else(tmp_path: Path) -> None:
    from docker.utils.build import exclude_paths

    copied = [
        source
        for op, arguments in _dockerfile_instructions()
        if op == "COPY" and not arguments.startswith("--from")
        for source in arguments.split()[:-1]
    ]
    assert {"pyproject.toml", "server", "engine", "storage"} <= set(copied)
    sources = [f"{source}/x.py" if "." not in source else source for source in copied]
    for path in [*sources, *WORKING_COPY_ONLY, "Dockerfile"]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    context = set(exclude_paths(str(tmp_path), patterns))
    assert set(sources) <= context
    leaked = [path for path in WORKING_COPY_ONLY if path in context]
    assert leaked == []
    assert not any(part in path for path in context for part in (".venv", "data", ".git"))
