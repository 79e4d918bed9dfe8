"""Builders of workflow inputs for tests."""

from __future__ import annotations

from typing import Any

WORKFLOW_FIELDS = """
  id name description tags version publishedVersion active settings createdAt updatedAt
  nodes { id name type typeVersion parameters position { x y } disabled notes
          retry { maxAttempts backoffSeconds backoffFactor maxBackoffSeconds }
          timeoutSeconds onError credentials
          issues { code message nodeId field severity } }
  edges { id source sourceOutput target targetInput }
"""

RESULT_FIELDS = f"""
  __typename
  ... on Workflow {{ {WORKFLOW_FIELDS} }}
  ... on ValidationError {{ message problems {{ code message nodeId field severity }} }}
  ... on NotFoundError {{ message id }}
  ... on VersionConflictError {{ message expectedVersion currentVersion }}
"""

CREATE = f"""
mutation($input: WorkflowInput!) {{ createWorkflow(input: $input) {{ {RESULT_FIELDS} }} }}
"""
UPDATE = f"""
mutation($id: ID!, $input: WorkflowInput!, $v: Int!) {{
  updateWorkflow(id: $id, input: $input, expectedVersion: $v) {{ {RESULT_FIELDS} }}
}}
"""
GET = f"query($id: ID!) {{ workflow(id: $id) {{ {WORKFLOW_FIELDS} }} }}"


def node(
    node_id: str, name: str | None = None, type: str = "noop", **fields: Any
) -> dict[str, Any]:
    return {"id": node_id, "name": name or node_id, "type": type, **fields}


def edge(source: str, target: str, **ports: str) -> dict[str, Any]:
    return {"source": source, "target": target, **ports}


def chain(count: int, type: str = "noop") -> dict[str, Any]:
    """A trigger followed by `count - 1` nodes in a line."""
    nodes = [node("n0", "Start", "manual_trigger")]
    nodes += [node(f"n{i}", f"Step {i}", type) for i in range(1, count)]
    edges = [edge(f"n{i - 1}", f"n{i}") for i in range(1, count)]
    return {"nodes": nodes, "edges": edges}


def workflow_input(name: str = "My workflow", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": name, **chain(3)}
    base.update(fields)
    return base
