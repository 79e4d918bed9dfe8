"""docs/api.md lists every built-in node type with every one of its parameters."""

from __future__ import annotations

import re
from pathlib import Path

from markdown_it import MarkdownIt

from engine.nodes.builtin import node_types

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
HEADER = ["type", "what it does", "parameters"]
CODE = re.compile(r"`([^`]+)`")


def _tables(markdown: str) -> list[list[list[str]]]:
    """Every table of a page, as rows of cell texts (the header row first)."""
    tables: list[list[list[str]]] = []
    row: list[str] = []
    for token in MarkdownIt("commonmark").enable("table").parse(markdown):
        if token.type == "table_open":
            tables.append([])
        elif token.type == "tr_open":
            row = []
        elif token.type in ("th_open", "td_open"):
            row.append("")
        elif token.type == "inline" and row and token.level > 0:
            row[-1] = token.content
        elif token.type == "tr_close":
            tables[-1].append(row)
            row = []
    return tables


def _documented() -> dict[str, str]:
    """The built-in node table of docs/api.md: type name to its parameters cell."""
    tables = [t for t in _tables(API_DOC.read_text(encoding="utf-8")) if t and t[0] == HEADER]
    assert len(tables) == 1, "docs/api.md has one table of built-in node types"
    rows: dict[str, str] = {}
    for name_cell, _, parameters in tables[0][1:]:
        name = CODE.fullmatch(name_cell)
        assert name, f"the type cell {name_cell!r} is one `name`"
        assert name.group(1) not in rows, f"{name.group(1)} is listed twice"
        rows[name.group(1)] = parameters
    return rows


def test_the_doc_lists_exactly_the_built_in_node_types() -> None:
    assert set(_documented()) == {node_type.name for node_type in node_types()}


def test_the_doc_names_every_parameter_of_each_built_in_type() -> None:
    documented = _documented()
    for node_type in node_types():
        cell = documented[node_type.name]
        parameters = set(node_type.parameters_schema.get("properties", {}))
        if not parameters:
            assert cell == "none", f"{node_type.name} takes no parameters"
            continue
        missing = parameters - set(CODE.findall(cell))
        assert not missing, f"{node_type.name}: the doc does not name {sorted(missing)}"
