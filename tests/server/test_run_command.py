"""`loom run WORKFLOW.json`: the command as a real process, and its edge cases in-process."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from server.run_command import EXIT_FAILED, EXIT_INVALID, EXIT_SUCCEEDED, run_workflow_file
from tests.factories import edge, nested, nested_text, node, workflow_input
from tests.server.loom_process import run_loom

LOOM = Path(sys.executable).parent / "loom"
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

# Wrong in many ways at once: every problem must be listed, with its node and field.
BROKEN = {
    "name": "Broken",
    "nodes": [
        node("start", "Start", "manual_trigger"),
        node("mystery", "Mystery", "no_such_type"),
        node("sorter", "Sorter", "sort", parameters={"fields": []}),
        node("flaky", "Flaky", "noop", retry={"maxAttempts": 0}, onError="IGNORE"),
    ],
    "edges": [edge("start", "sorter"), edge("start", "ghost")],
}


@dataclass(frozen=True, slots=True)
class Ran:
    code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    """Every `loom run` process of this module, started together: each spends a second or
    two importing, which in parallel is paid about once."""
    broken = tmp_path_factory.mktemp("run") / "broken.json"
    broken.write_text(json.dumps(BROKEN), encoding="utf-8")
    commands = {
        "success": ["examples/branching.json"],
        "failure": ["examples/stop_and_error.json"],
        "invalid": [str(broken)],
        "bad_input": ["examples/branching.json", "--input", "[1, 2]"],
    }
    processes = {
        name: subprocess.Popen(
            [str(LOOM), "run", *arguments],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, arguments in commands.items()
    }
    results = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=60)
        results[name] = Ran(process.returncode, stdout, stderr)
    return results


def _expected_output(example: str) -> Any:
    return json.loads((EXAMPLES / "expected" / example).read_text(encoding="utf-8"))["output"]


def test_success_prints_progress_and_the_output_as_json(ran: dict[str, Ran]) -> None:
    result = ran["success"]
    assert result.code == EXIT_SUCCEEDED, result.stderr
    assert json.loads(result.stdout) == _expected_output("branching.json")
    assert "Over 100?" in result.stderr
    assert "succeeded" in result.stderr
    assert "SUCCEEDED" in result.stderr


def test_failure_exits_1_with_the_error_type_and_message(ran: dict[str, Ran]) -> None:
    result = ran["failure"]
    assert result.code == EXIT_FAILED
    assert result.stdout == ""
    assert "FAILED" in result.stderr
    assert "STOP_AND_ERROR: node 'Reject': Quantity must be positive, got 0" in result.stderr


def test_invalid_file_exits_2_listing_every_problem_with_node_and_field(
    ran: dict[str, Ran],
) -> None:
    result = ran["invalid"]
    assert result.code == EXIT_INVALID
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert "is not a valid workflow (5 problems)" in lines[0]
    for expected in (
        "node 'mystery' type: Unknown node type 'no_such_type'",
        "node 'sorter' parameters.fields:",
        "node 'flaky' retry.maxAttempts:",
        "node 'flaky' onError: onError must be one of STOP, CONTINUE, ERROR_OUTPUT",
        "edges[1].target: Connection from 'Start' to 'ghost'",
    ):
        assert any(expected in line for line in lines[1:]), (expected, result.stderr)


def test_input_that_is_not_an_object_exits_2(ran: dict[str, Ran]) -> None:
    result = ran["bad_input"]
    assert result.code == EXIT_INVALID
    assert result.stdout == ""
    assert "--input must be a JSON object, got [1, 2]" in result.stderr


def _run(path: Path, input_json: str | None = None, *, quiet: bool = False) -> tuple[int, str, str]:
    console = Console(file=io.StringIO(), width=200)
    output = io.StringIO()
    code = run_workflow_file(path, input_json, console, quiet=quiet, output=output)
    assert isinstance(console.file, io.StringIO)
    return code, output.getvalue(), console.file.getvalue()


def _write(tmp_path: Path, content: Any) -> Path:
    path = tmp_path / "workflow.json"
    text = content if isinstance(content, str) else json.dumps(content)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("content", "input_json", "message"),
    [
        (None, None, "cannot read"),
        ('{"name": "x", "nodes": [', None, "is not valid JSON"),
        (workflow_input(), "{oops", "--input is not valid JSON"),
        (workflow_input(input=[1]), None, "input: input must be a JSON object, got [1]"),
        ([1, 2], None, "the file must hold a JSON object"),
        (workflow_input(nodes=[]), None, "nodes: nodes must be a non-empty list"),
        (
            workflow_input(settings={"executionTimeoutSeconds": "soon"}),
            None,
            "settings.executionTimeoutSeconds:",
        ),
        (
            workflow_input(),
            json.dumps({"x": nested(64)}),
            "--input is nested more than 64 levels deep",
        ),
        (
            workflow_input(input={"x": nested(64)}),
            None,
            "input: input is nested more than 64 levels deep",
        ),
        (nested_text(100_000), None, "is nested too deeply to read"),
    ],
    ids=[
        "missing",
        "bad-json",
        "bad-input-json",
        "file-input-not-object",
        "not-object",
        "no-nodes",
        "bad-settings",
        "deep-input-json",
        "deep-file-input",
        "deep-file",
    ],
)
def test_unusable_files_and_inputs_exit_2(
    tmp_path: Path, content: Any, input_json: str | None, message: str
) -> None:
    path = tmp_path / "missing.json" if content is None else _write(tmp_path, content)
    code, output, progress = _run(path, input_json)
    assert code == EXIT_INVALID
    assert output == ""
    assert message in progress


def test_malformed_nodes_and_edges_are_reported_at_their_place_in_the_file(
    tmp_path: Path,
) -> None:
    path = _write(
        tmp_path,
        workflow_input(
            nodes=[
                "not a node",
                {"name": "No id", "type": "noop"},
                node("start", "Start", "manual_trigger", timeout=3, disabled="yes"),
                node("end", "End"),
            ],
            edges=[7, edge("start", "end"), edge("start", "nowhere")],
        ),
    )
    code, _, progress = _run(path)
    assert code == EXIT_INVALID
    for expected in (
        "nodes[0]: a node must be a JSON object",
        "nodes[1].id: id must be non-empty text, got null",
        "node 'start' timeout: unknown field 'timeout'",
        "node 'start' disabled: disabled must be true or false",
        "edges[0]: an edge must be a JSON object",
        # Validation sees the graph without the unusable edge, yet names the file's index.
        "edges[2].target: Connection from 'Start' to 'nowhere'",
    ):
        assert expected in progress, (expected, progress)


def test_execution_timeout_from_settings_fails_the_run() -> None:
    code, output, progress = _run(EXAMPLES / "execution_timeout.json")
    assert code == EXIT_FAILED
    assert output == ""
    assert "EXECUTION_TIMEOUT" in progress
    assert "cancelled" in progress


def test_input_option_overrides_the_files_input_and_quiet_prints_only_the_output() -> None:
    code, output, progress = _run(EXAMPLES / "stop_and_error.json", '{"quantity": 2}', quiet=True)
    assert code == EXIT_SUCCEEDED, progress
    assert json.loads(output) == [{"quantity": 2, "accepted": True}]
    assert progress == ""


def test_the_output_limit_setting_holds_in_loom_run(tmp_path: Path) -> None:
    nodes = [
        node("start", "Start", "manual_trigger"),
        node(
            "big",
            "Big",
            "set",
            parameters={"fields": [{"name": "s", "value": "{{ 'x' * 70000 }}"}]},
        ),
    ]
    path = _write(tmp_path, workflow_input(nodes=nodes, edges=[edge("start", "big")]))
    refused = run_loom("run", str(path), cwd=tmp_path, LOOM_MAX_NODE_OUTPUT_BYTES="65536")
    assert refused.code == EXIT_FAILED, refused.stderr
    assert "NODE_OUTPUT_TOO_LARGE: node 'Big': produced more output than the limit of 65,536" in (
        " ".join(refused.stderr.split())
    )
    assert refused.stdout == ""
    allowed = run_loom("run", str(path), cwd=tmp_path, LOOM_MAX_NODE_OUTPUT_BYTES="100000")
    assert allowed.code == EXIT_SUCCEEDED, allowed.stderr
    assert json.loads(allowed.stdout) == [{"s": "x" * 70000}]


def test_the_code_settings_hold_in_loom_run(tmp_path: Path) -> None:
    nodes = [
        node("start", "Start", "manual_trigger"),
        node("spin", "Spin", "code", parameters={"code": "for (;;) {}"}),
    ]
    path = _write(tmp_path, workflow_input(nodes=nodes, edges=[edge("start", "spin")]))
    ran = run_loom("run", str(path), cwd=tmp_path, LOOM_CODE_TIMEOUT_S="0.5")
    assert ran.code == EXIT_FAILED, ran.stderr
    assert "CODE_TIMEOUT: node 'Spin': the code ran longer than 0.5 s and was stopped" in (
        " ".join(ran.stderr.split())
    )


def test_loom_run_refuses_the_node_types_the_setting_disables(tmp_path: Path) -> None:
    nodes = [node("start", "Start", "manual_trigger"), node("n", "Pass", "noop")]
    path = _write(tmp_path, workflow_input(nodes=nodes, edges=[edge("start", "n")]))
    refused = run_loom("run", str(path), cwd=tmp_path, LOOM_DISABLED_NODE_TYPES="code,noop")
    assert refused.code == EXIT_INVALID, refused.stderr
    assert "NODE_TYPE_DISABLED" in refused.stderr
    assert "LOOM_DISABLED_NODE_TYPES" in " ".join(refused.stderr.split())
    assert refused.stdout == ""
    allowed = run_loom("run", str(path), cwd=tmp_path, LOOM_DISABLED_NODE_TYPES="code")
    assert allowed.code == EXIT_SUCCEEDED, allowed.stderr
