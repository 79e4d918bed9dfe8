"""Settings from the environment: list syntax, and one clear line for every bad value."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest

from server.settings import (
    ENV_PREFIX,
    InvalidSettingsError,
    Settings,
    load_settings,
    setting_example,
)
from tests.server.loom_process import run_loom, start_loom

SECRETS = {"secret_key", "previous_secret_keys", "admin_token", "metrics_token"}
LIST_SETTINGS = sorted(
    name
    for name, field in Settings.model_fields.items()
    if typing.get_origin(field.annotation) is list
)


def test_there_are_list_settings_to_check() -> None:
    assert {"http_allowed_networks", "allowed_origins"} <= set(LIST_SETTINGS)


@pytest.mark.parametrize("name", LIST_SETTINGS)
def test_every_list_setting_reads_comma_separated_values_and_json(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = setting_example(name)
    assert example is not None and "," in example
    expected = example.split(",")
    variable = ENV_PREFIX + name.upper()
    for written in (example, " , ".join(expected) + ",", json.dumps(expected)):
        monkeypatch.setenv(variable, written)
        assert getattr(load_settings(_env_file=None), name) == expected, written


@pytest.mark.parametrize("name", sorted(set(Settings.model_fields) - SECRETS))
def test_every_setting_has_an_example_that_is_valid(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = setting_example(name)
    assert example is not None
    monkeypatch.setenv(ENV_PREFIX + name.upper(), example)
    load_settings(_env_file=None)


# One of each class of mistake: (variable, value, what the message must say).
BAD = {
    "int": ("LOOM_PORT", "eighty", ["LOOM_PORT='eighty'", "integer", "LOOM_PORT=8000"]),
    "list member": (
        "LOOM_HTTP_ALLOWED_NETWORKS",
        "10.0.0.0/8,10.0.0.0/33",
        ["LOOM_HTTP_ALLOWED_NETWORKS item 2 ('10.0.0.0/33')", "not an IP network", "10.1.0.0/16"],
    ),
    "json": (
        "LOOM_ALLOWED_ORIGINS",
        '["https://a.example"',
        ["LOOM_ALLOWED_ORIGINS=", "not a valid JSON list", "LOOM_ALLOWED_ORIGINS=https://"],
    ),
    "enum": ("LOOM_LOG_LEVEL", "loud", ["LOOM_LOG_LEVEL='loud'", "'debug'", "LOOM_LOG_LEVEL=info"]),
    "url": ("LOOM_REDIS_URL", "localhost:6379", ["LOOM_REDIS_URL:", "redis://"]),
    "url port": (
        "LOOM_DATABASE_URL",
        "postgresql://u:hunter2@h:notaport/db",
        ["LOOM_DATABASE_URL:", "port is not a number"],
    ),
    "bound": ("LOOM_WORKER_CONCURRENCY", "0", ["LOOM_WORKER_CONCURRENCY='0'", "greater than"]),
}
COMMANDS = [
    ("serve",),
    ("worker",),
    ("run", "workflow.json"),
    ("db", "upgrade"),
    ("token", "create", "--user", "someone"),
    ("secrets", "rotate"),
    ("export-schema", "--output", "-"),
]
# Every class of mistake with `loom serve`, and every command with one of them.
CASES = [(("serve",), kind) for kind in BAD] + [
    (command, list(BAD)[index % len(BAD)]) for index, command in enumerate(COMMANDS[1:], 1)
]


@pytest.mark.timeout(120)
def test_a_bad_setting_stops_every_command_with_one_line(tmp_path: Path) -> None:
    runs = []
    for command, kind in CASES:
        workdir = tmp_path / f"{command[0]}-{kind.replace(' ', '-')}"
        workdir.mkdir()
        variable, value, _ = BAD[kind]
        runs.append((kind, workdir, start_loom(*command, cwd=workdir, **{variable: value})))
    for kind, workdir, started in runs:
        ran = started.wait()
        context = (ran.args, kind, ran.stderr)
        assert ran.code != 0, context
        assert "Traceback" not in ran.stderr, context
        assert len(ran.stderr.strip().splitlines()) == 1, context
        assert ran.stdout == "", context
        for expected in BAD[kind][2]:
            assert expected in ran.stderr, (expected, context)
        assert "hunter2" not in ran.stderr, context
        assert list(workdir.iterdir()) == [], "nothing is created"


def test_a_comma_separated_network_list_is_accepted_by_the_command(tmp_path: Path) -> None:
    """The case of the report: `LOOM_HTTP_ALLOWED_NETWORKS=127.0.0.0/8 make run`."""
    ran = run_loom(
        "db", "upgrade", cwd=tmp_path, LOOM_HTTP_ALLOWED_NETWORKS="127.0.0.0/8, 10.1.0.0/16"
    )
    assert ran.code == 0, ran.stderr


def test_an_output_limit_no_error_item_fits_under_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOOM_MAX_NODE_OUTPUT_BYTES", "1000")
    with pytest.raises(InvalidSettingsError) as refused:
        load_settings(_env_file=None)
    assert str(refused.value) == (
        "LOOM_MAX_NODE_OUTPUT_BYTES='1000': input should be greater than or equal to 65536 "
        "(example: LOOM_MAX_NODE_OUTPUT_BYTES=134217728)"
    )


@pytest.mark.parametrize(
    "variable",
    [
        "LOOM_EXECUTIONS_MAX_AGE_HOURS",
        "LOOM_EXECUTIONS_MAX_COUNT",
        "LOOM_FAILED_EXECUTIONS_MAX_AGE_HOURS",
        "LOOM_AUDIT_MAX_AGE_HOURS",
    ],
)
@pytest.mark.parametrize("written", ["", "none", "None", " NONE "])
def test_an_empty_retention_bound_means_no_limit(
    variable: str, written: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, written)
    settings = load_settings(_env_file=None)
    assert getattr(settings, variable.removeprefix(ENV_PREFIX).lower()) is None
    monkeypatch.setenv(variable, "0")
    with pytest.raises(InvalidSettingsError):
        load_settings(_env_file=None)


def test_the_idempotency_key_ttl_is_24_hours_and_a_bad_one_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings(_env_file=None)
    assert settings.idempotency_key_ttl_hours == 24.0
    assert settings.retention_policy().idempotency_key_ttl_hours == 24.0
    monkeypatch.setenv("LOOM_IDEMPOTENCY_KEY_TTL_HOURS", "0.5")
    assert load_settings(_env_file=None).retention_policy().idempotency_key_ttl_hours == 0.5
    for bad in ("0", "-1", "a day"):
        monkeypatch.setenv("LOOM_IDEMPOTENCY_KEY_TTL_HOURS", bad)
        with pytest.raises(InvalidSettingsError) as refused:
            load_settings(_env_file=None)
        message = str(refused.value)
        assert message.startswith(f"LOOM_IDEMPOTENCY_KEY_TTL_HOURS={bad!r}: "), message
        assert "\n" not in message
