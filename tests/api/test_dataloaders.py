"""DataLoaders: a page of workflows with their relations costs a constant number of queries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, insert

from storage.models import Workflow, WorkflowVersion
from tests.factories import WORKFLOW_FIELDS, chain
from tests.teams import team

PAGE = f"""
query {{
  workflows(first: 50) {{
    totalCount
    edges {{ cursor node {{
      {WORKFLOW_FIELDS}
      issues {{ code }} runnable
      workspace {{ id name }}
      createdBy {{ id name personalWorkspace {{ id }} }}
      versions {{ id version nodes {{ id }} }}
    }} }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}
"""

# Authentication (the token's user, their memberships), the page, its total, then one batch
# each for workspaces, users and versions. The creators' personal workspaces are already in
# the workspace loader's cache.
MAX_STATEMENTS = 7


@contextmanager
def counted_statements(database) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def _store_workflows(
    database, caller, count: int, nodes_each: int = 5, workspace_id: str | None = None
) -> None:
    """`count` published workflows of `nodes_each` nodes, inserted in bulk (in the caller's
    personal workspace unless `workspace_id` says)."""
    if workspace_id is None:
        data = await caller.gql("{ viewer { personalWorkspace { id } } }")
        workspace_id = data["viewer"]["personalWorkspace"]["id"]
    graph = chain(nodes_each)
    stored_nodes = [
        {**n, "typeVersion": None, "parameters": {}, "position": {"x": 0, "y": 0}}
        for n in graph["nodes"]
    ]
    stored_edges = [{**e, "sourceOutput": "main", "targetInput": "main"} for e in graph["edges"]]
    start = datetime(2030, 1, 1, tzinfo=UTC)
    rows = [
        Workflow(
            workspace_id=workspace_id,
            name=f"bulk {index}",
            nodes=stored_nodes,
            edges=stored_edges,
            version=2,
            published_version=1,
            created_by=caller.user_id,
            created_at=start + timedelta(seconds=index),
            updated_at=start,
        ).model_dump()
        for index in range(count)
    ]
    versions = [
        WorkflowVersion(
            workflow_id=row["id"],
            version=version,
            name=row["name"],
            nodes=stored_nodes,
            edges=stored_edges,
            settings={},
            created_by=caller.user_id,
        ).model_dump()
        for row in rows
        for version in (1, 2)
    ]
    async with database.transaction() as session:
        await session.exec(insert(Workflow), params=rows)
        await session.exec(insert(WorkflowVersion), params=versions)


async def _count_page(database, caller) -> tuple[int, dict]:
    with counted_statements(database) as statements:
        data = await caller.gql(PAGE)
    return len(statements), data


@pytest.mark.parametrize("count", [5, 50])
async def test_page_of_workflows_costs_a_constant_number_of_queries(database, alice, count):
    await _store_workflows(database, alice, count)
    statements, data = await _count_page(database, alice)
    page = data["workflows"]
    assert page["totalCount"] == count
    assert len(page["edges"]) == count
    first = page["edges"][0]["node"]
    assert len(first["nodes"]) == 5
    assert first["createdBy"]["name"] == "alice"
    assert first["workspace"]["name"] == "alice's workspace"
    assert [v["version"] for v in first["versions"]] == [2, 1]
    assert statements <= MAX_STATEMENTS, statements


async def test_query_count_does_not_grow_with_the_page(database, alice):
    await _store_workflows(database, alice, 5)
    small, _ = await _count_page(database, alice)
    await _store_workflows(database, alice, 45)
    large, data = await _count_page(database, alice)
    assert len(data["workflows"]["edges"]) == 50
    assert small == large


async def test_many_nodes_cost_no_extra_queries(database, alice, bob):
    await _store_workflows(database, alice, 1, nodes_each=2)
    await _store_workflows(database, bob, 1, nodes_each=500)
    small, _ = await _count_page(database, alice)
    large, data = await _count_page(database, bob)
    assert len(data["workflows"]["edges"][0]["node"]["nodes"]) == 500
    assert small == large


TEAM_PAGE = """
query { workflows(first: 50) { totalCount edges { node {
  id name workspace { id name role members { role user { id name } } } createdBy { name }
} } } }
"""


async def test_a_page_across_shared_workspaces_costs_a_constant_number_of_queries(
    database, alice, bob, make_caller
):
    """Issue 18: workflows of several shared workspaces, with their members, by role."""
    small_team = await team(alice, {"editor": bob}, name="Small")
    members = {role: await make_caller(f"m-{role}") for role in ("admin", "operator")}
    large_team = await team(alice, {"viewer": bob, **members}, name="Large")
    counts = []
    for workspace_id, count in ((small_team, 2), (large_team, 25)):
        await _store_workflows(database, bob, count, workspace_id=workspace_id)
        await _store_workflows(database, alice, count)
        with counted_statements(database) as statements:
            data = await bob.gql(TEAM_PAGE)
        counts.append(len(statements))
    page = data["workflows"]
    assert page["totalCount"] == 27 and len(page["edges"]) == 27  # bob's: both teams
    roles = {e["node"]["workspace"]["name"]: e["node"]["workspace"]["role"] for e in page["edges"]}
    assert roles == {"Small": "editor", "Large": "viewer"}
    large = next(e["node"] for e in page["edges"] if e["node"]["workspace"]["name"] == "Large")
    assert len(large["workspace"]["members"]) == 4
    # The page, its total, then one batch each for workspaces, members and users.
    assert counts[0] == counts[1] <= MAX_STATEMENTS, counts
