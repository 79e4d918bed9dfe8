"""How a page's blocks become steps, and how a shown answer is checked (no server)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs.doc_examples import AnswerMismatch, DocExampleError, match, read_page, substitute


def _page(tmp_path: Path, markdown: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(markdown, encoding="utf-8")
    return path


def test_a_request_takes_the_json_after_it_as_variables_and_an_answer(tmp_path: Path) -> None:
    page = read_page(
        _page(
            tmp_path,
            "```graphql\nquery($id: ID!) { a(id: $id) }\n```\n\nWith:\n\n"
            '```json\n{"id": "$X"}\n```\n\n```json answer\n{"data": {}}\n```\n\n'
            "```sh\ncurl -s http://127.0.0.1:8000/healthz\n```\n\n"
            '```json answer\n{"status": "ok"}\n```\n',
        )
    )
    first, second = page.steps
    assert first.kind == "graphql"
    assert first.variables is not None and first.variables.text == '{"id": "$X"}\n'
    assert first.answer is not None and first.answer.line == 11
    assert second.kind == "sh" and second.variables is None
    assert second.answer is not None and second.answer.text == '{"status": "ok"}\n'


def test_a_marked_block_is_left_out_with_its_reason(tmp_path: Path) -> None:
    page = read_page(
        _page(tmp_path, "- item\n\n  <!-- not-run: a fragment -->\n  ```js\n  x()\n  ```\n")
    )
    assert page.steps == []
    assert [block.language for block in page.not_run] == ["js"]


@pytest.mark.parametrize(
    "markdown",
    [
        "```js\nx()\n```\n",  # a language the test cannot run
        "```\nplain\n```\n",  # no language at all
        "Text\n\n    indented code\n",
        '```json\n{"a": 1}\n```\n',  # JSON that is no request's variables
        "```sh\ntrue\n```\n\nThen:\n\n```json\n{}\n```\n",  # variables belong to graphql only
        '```json answer\n{"a": 1}\n```\n',  # an answer to nothing
        "```sh\ntrue\n```\n```text answer\na\n```\n```text answer\nb\n```\n",  # two answers
        "```graphql\n{ a }\n```\n```yaml answer\na: 1\n```\n",
        "```graphql\n{ a }\n```\n```json expected\n{}\n```\n",  # an unknown role
        "<!-- not-run -->\nText, not a block.\n",
        "Text\n\n<!-- not-run -->\n",
    ],
)
def test_a_block_the_test_cannot_run_unless_marked_fails(tmp_path: Path, markdown: str) -> None:
    with pytest.raises(DocExampleError):
        read_page(_page(tmp_path, markdown))


def test_an_answer_shows_what_matters_and_binds_names() -> None:
    actual = {
        "data": {
            "workflow": {"id": "w-1", "version": 2, "createdAt": "2025-01-01T00:00:00Z"},
            "edges": [{"id": 1}, {"id": 2}, {"id": 3}],
        }
    }
    expected = {
        "data": {
            "workflow": {"id": "$WORKFLOW_ID", "version": 2.0, "createdAt": "..."},
            "edges": [{"id": 1}, "..."],
        }
    }
    assert match(expected, actual, {}) == {"WORKFLOW_ID": "w-1"}
    assert match({"id": "$WORKFLOW_ID"}, {"id": "w-1"}, {"WORKFLOW_ID": "w-1"}) == {}


@pytest.mark.parametrize(
    ("expected", "actual", "where"),
    [
        ({"status": "SUCCEEDED"}, {"status": "RUNNING"}, "$.status"),
        ({"a": 1}, {"b": 1}, "$"),
        ({"items": [1, 2]}, {"items": [1, 2, 3]}, "$.items"),  # a list shown whole
        ({"items": [1, 2, "..."]}, {"items": [1]}, "$.items"),
        ({"flag": True}, {"flag": 1}, "$.flag"),
        ({"id": "$WORKFLOW_ID"}, {"id": "w-2"}, "$.id"),  # a name keeps its value
        ({"id": "$OTHER"}, {"id": {"nested": 1}}, "$.id"),  # names stand for scalars
    ],
)
def test_an_answer_that_differs_says_where(expected: object, actual: object, where: str) -> None:
    with pytest.raises(AnswerMismatch, match=rf"^{re.escape(where)}:"):
        match(expected, actual, {"WORKFLOW_ID": "w-1"})


def test_names_are_filled_in_escaped_and_an_unknown_one_fails() -> None:
    assert substitute('{"id": "$ID", "q": "$QUOTE"}', {"ID": "w-1", "QUOTE": 'a"b'}, 3) == (
        '{"id": "w-1", "q": "a\\"b"}'
    )
    # GraphQL variables are lower case and stay as they are.
    assert substitute("query($id: ID!) { a(id: $id) }", {}, 1) == "query($id: ID!) { a(id: $id) }"
    with pytest.raises(DocExampleError, match=r"line 7: \$MISSING has no value yet"):
        substitute('"$MISSING"', {}, 7)
