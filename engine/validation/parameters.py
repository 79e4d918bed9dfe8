"""Parameter problems: a node's parameters against its type's JSON Schema, memoised."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

from engine.graph import Node
from engine.node_types import NodeType
from engine.validation.report import Problem, Severity

if TYPE_CHECKING:
    from engine.validation.findings import Finding
    from engine.validation.schemas import CompiledSchema

# The editor re-validates the whole graph on every change, so most nodes arrive unchanged, and
# a check costs microseconds per node (tens when jsonschema must word problems), which 2000
# nodes turn into a pause. Results are memoised by the parameters' JSON text: up to this size,
# this many entries (16 MiB at worst, far less in practice), enough for the largest graph.
_MEMO_MAX_CHARS = 2048
_MEMO_ENTRIES = 8192


@functools.lru_cache(maxsize=_MEMO_ENTRIES)
def _check_json(schema: CompiledSchema, encoded: str) -> tuple[Finding, ...]:
    # Decoding the key itself guarantees that an entry matches the text it is filed under.
    parameters = json.loads(encoded)
    return () if schema.vouches_for(encoded, parameters) else schema.check(parameters)


# (name, version) -> compiled schema. The entry holds its node type, and is used only for that
# very descriptor: a registry with another descriptor under the same name and version (tests,
# reloaded plugins) replaces it.
_schemas: dict[tuple[str, int], CompiledSchema] = {}


def _schema_for(node_type: NodeType) -> CompiledSchema:
    key = (node_type.name, node_type.version)
    compiled = _schemas.get(key)
    if compiled is None or compiled.node_type is not node_type:
        # jsonschema and jsonschema-rs (9 MB, 55 ms) load with the first parameters to
        # check, not with every process start.
        from engine.validation.schemas import CompiledSchema

        compiled = _schemas[key] = CompiledSchema(node_type)
    return compiled


def parameter_problems(node: Node, node_type: NodeType, encoded: str | None) -> list[Problem]:
    """Problems of a node's parameters against its type's schema (severity PARAMETER); its
    type's own check is `checked_problems`.

    `encoded` is the parameters as JSON text when they are plain JSON, which allows the memo.
    """
    compiled = _schema_for(node_type)
    if encoded is None:
        findings = compiled.check(node.parameters)
    elif len(encoded) <= _MEMO_MAX_CHARS:
        findings = _check_json(compiled, encoded)
    elif compiled.vouches_for(encoded, json.loads(encoded)):
        findings = ()
    else:
        findings = compiled.check(node.parameters)
    return [
        Problem(finding.code, finding.message, node.id, finding.field, Severity.PARAMETER)
        for finding in findings
    ]


def checked_problems(
    node: Node, node_type: NodeType, found: list[Problem]
) -> Iterator[Problem | None]:
    """Problems the node type's own check finds (`NodeType.check_parameters`), on fields
    without a problem in `found` (one problem per field: a schema problem says enough).
    None comes where the check paused: where the caller may too."""
    if node_type.check_parameters is None or not isinstance(node.parameters, dict):
        return
    taken = {problem.field for problem in found}
    for checked in node_type.check_parameters(node.parameters):
        if checked is None:
            yield None
            continue
        code, path, message = checked
        field = f"parameters.{path}"
        if field not in taken:
            yield Problem(code, message, node.id, field, Severity.PARAMETER)
