from __future__ import annotations

from tests.factories import CREATE, GET, workflow_input


async def test_create_and_read(alice):
    data = await alice.gql(CREATE, {"input": workflow_input()})
    created = data["createWorkflow"]
    assert created["__typename"] == "Workflow", created
    got = await alice.gql(GET, {"id": created["id"]})
    assert got["workflow"]["name"] == "My workflow"
