"""Every example workflow runs, through the code `loom run` uses, to its expected result."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from engine.executor import Executor
from server.run_command import ConsoleRecorder, execute, load_workflow_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXPECTED = EXAMPLES / "expected"
WORKFLOWS = sorted(EXAMPLES.glob("*.json"))


def _expected(workflow: Path) -> dict[str, Any]:
    path = EXPECTED / workflow.name
    assert path.is_file(), f"{workflow.name} has no expected result: add {path}"
    expected: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    assert expected.get("status") in ("SUCCEEDED", "FAILED", "CANCELLED")
    assert ("output" in expected) == (expected["status"] == "SUCCEEDED"), (
        "a successful example states its output; a failed one its error"
    )
    return expected


def test_there_are_a_dozen_examples_and_no_stray_expectations() -> None:
    assert len(WORKFLOWS) >= 12
    names = {path.name for path in WORKFLOWS}
    assert {path.name for path in EXPECTED.glob("*.json")} <= names


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.stem)
def test_example_says_what_it_shows(workflow: Path) -> None:
    description = json.loads(workflow.read_text(encoding="utf-8")).get("description")
    assert isinstance(description, str)
    assert description.strip()


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.stem)
async def test_example_runs_to_its_expected_result(workflow: Path) -> None:
    expected = _expected(workflow)
    loaded = load_workflow_file(workflow)
    progress = io.StringIO()
    recorder = ConsoleRecorder(Console(file=progress, width=200), loaded.plan)

    outcome = await execute(loaded, Executor(recorder))

    assert outcome.status.value == expected["status"], outcome.error
    if "output" in expected:
        assert outcome.output == expected["output"]
    if "error" in expected:
        assert outcome.error is not None
        assert {key: outcome.error.to_json()[key] for key in expected["error"]} == expected["error"]
    runs = {state.node_name: state for state in outcome.node_runs.values()}
    for name, node in expected.get("nodes", {}).items():
        assert runs[name].status.value == node["status"], name
        if "attempt" in node:
            assert runs[name].attempt == node["attempt"], name
        if "console" in node:
            printed = runs[name].console
            assert list(printed.lines if printed else ()) == node["console"], name
    for plan_node in loaded.plan.nodes.values():
        assert plan_node.node.name in progress.getvalue()
