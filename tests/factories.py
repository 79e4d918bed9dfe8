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


DELETE = """
mutation($id: ID!) {
  deleteWorkflow(id: $id) { __typename ... on Deleted { id } ... on NotFoundError { message id } }
}
"""
DUPLICATE = f"""
mutation($id: ID!, $name: String) {{
  duplicateWorkflow(id: $id, name: $name) {{ {RESULT_FIELDS} }}
}}
"""
ADD_NODE = f"""
mutation($wf: ID!, $node: NodeInput!, $v: Int!) {{
  addNode(workflowId: $wf, node: $node, expectedVersion: $v) {{ {RESULT_FIELDS} }}
}}
"""
UPDATE_NODE = f"""
mutation($wf: ID!, $nodeId: ID!, $node: NodeInput!, $v: Int!) {{
  updateNode(workflowId: $wf, nodeId: $nodeId, node: $node, expectedVersion: $v) {{
    {RESULT_FIELDS}
  }}
}}
"""
REMOVE_NODE = f"""
mutation($wf: ID!, $nodeId: ID!, $v: Int!) {{
  removeNode(workflowId: $wf, nodeId: $nodeId, expectedVersion: $v) {{ {RESULT_FIELDS} }}
}}
"""
UPGRADE_NODE = f"""
mutation($wf: ID!, $nodeId: ID!, $to: Int!, $v: Int!) {{
  upgradeNode(workflowId: $wf, nodeId: $nodeId, toVersion: $to, expectedVersion: $v) {{
    {RESULT_FIELDS}
  }}
}}
"""
ADD_EDGE = f"""
mutation($wf: ID!, $edge: EdgeInput!, $v: Int!) {{
  addEdge(workflowId: $wf, edge: $edge, expectedVersion: $v) {{ {RESULT_FIELDS} }}
}}
"""
REMOVE_EDGE = f"""
mutation($wf: ID!, $edge: EdgeInput!, $v: Int!) {{
  removeEdge(workflowId: $wf, edge: $edge, expectedVersion: $v) {{ {RESULT_FIELDS} }}
}}
"""
PIN_NODE_DATA = f"""
mutation($wf: ID!, $nodeId: ID!, $items: JSON!, $v: Int!) {{
  pinNodeData(workflowId: $wf, nodeId: $nodeId, items: $items, expectedVersion: $v) {{
    {RESULT_FIELDS}
  }}
}}
"""
UNPIN_NODE_DATA = f"""
mutation($wf: ID!, $nodeId: ID!, $v: Int!) {{
  unpinNodeData(workflowId: $wf, nodeId: $nodeId, expectedVersion: $v) {{ {RESULT_FIELDS} }}
}}
"""
PUBLISH = f"""
mutation($id: ID!, $v: Int!) {{
  publishWorkflow(id: $id, expectedVersion: $v) {{ {RESULT_FIELDS} }}
}}
"""
SET_ACTIVE = f"""
mutation($id: ID!, $active: Boolean!) {{
  setWorkflowActive(id: $id, active: $active) {{ {RESULT_FIELDS} }}
}}
"""
VERSION_FIELDS = """
  id workflowId version name settings createdAt
  nodes { id name type parameters position { x y } issues { code } }
  edges { id source sourceOutput target targetInput }
"""
GET_VERSION = f"""
query($id: ID!, $version: Int!) {{
  workflowVersion(id: $id, version: $version) {{ {VERSION_FIELDS} }}
}}
"""
GET_WITH_VERSIONS = f"""
query($id: ID!) {{
  workflow(id: $id) {{ id version publishedVersion versions {{ {VERSION_FIELDS} }} }}
}}
"""
LIST = """
query($first: Int, $after: String, $filter: WorkflowFilter) {
  workflows(first: $first, after: $after, filter: $filter) {
    totalCount
    edges { cursor node { id name tags active createdAt } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}
"""


def only(data: dict[str, Any]) -> Any:
    """The value of the single root field of a GraphQL `data` object."""
    (value,) = data.values()
    return value


async def create_workflow(caller: Any, name: str = "My workflow", **fields: Any) -> dict[str, Any]:
    """Create a workflow through the API as `caller`; it must succeed."""
    created = only(await caller.gql(CREATE, {"input": workflow_input(name, **fields)}))
    assert created["__typename"] == "Workflow", created
    return dict(created)


async def publish_workflow(caller: Any, workflow: dict[str, Any]) -> dict[str, Any]:
    """Publish `workflow` at its current version; it must succeed."""
    published = only(await caller.gql(PUBLISH, {"id": workflow["id"], "v": workflow["version"]}))
    assert published["__typename"] == "Workflow", published
    return dict(published)


def problem_codes(result: dict[str, Any]) -> list[str]:
    assert result["__typename"] == "ValidationError", result
    return [problem["code"] for problem in result["problems"]]


def nested(depth: int, leaf: Any = 1) -> Any:
    """A JSON value `depth` levels deep: objects and arrays in turn around `leaf`."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def nested_text(depth: int) -> str:
    """JSON text of arrays `depth` levels deep, for depths the client's encoder cannot reach."""
    return "[" * depth + "1" + "]" * depth
