"""LOOM_CODE_* settings become the Code node's limits, and out-of-range values are refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from engine.code import CodeLimits
from server.settings import Settings


def test_code_settings_become_the_sandbox_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_CODE_TIMEOUT_S", "2.5")
    monkeypatch.setenv("LOOM_CODE_HEAP_MB", "32")
    monkeypatch.setenv("LOOM_CODE_RESULT_MB", "4")
    monkeypatch.setenv("LOOM_CODE_SANDBOXES", "3")
    limits = Settings(_env_file=None).code_limits()  # type: ignore[call-arg]
    assert limits == CodeLimits(
        timeout_s=2.5, heap_bytes=32 * 2**20, result_bytes=4 * 2**20, pool_size=3
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LOOM_CODE_TIMEOUT_S", "0"),
        ("LOOM_CODE_HEAP_MB", "1"),
        ("LOOM_CODE_RESULT_MB", "0"),
        ("LOOM_CODE_SANDBOXES", "0"),
    ],
)
def test_out_of_range_code_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=variable.removeprefix("LOOM_").lower()):
        Settings(_env_file=None)  # type: ignore[call-arg]
