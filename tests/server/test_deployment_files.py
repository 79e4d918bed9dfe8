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
