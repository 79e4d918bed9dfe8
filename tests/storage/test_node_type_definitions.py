"""Stored versions of declarative node types, on SQLite and PostgreSQL: numbering that never
reuses a number, deletion refused while workflows use the type, and the workspace's view."""

from __future__ import annotations

import pytest

from engine.node_types import NodeTypeRegistry, WorkspaceNodeTypes
from storage import accounts, node_type_definitions, workflows
from storage.db import Database
from storage.errors import DuplicateNameError, NotFoundError
from storage.models import Workflow
from storage.node_type_definitions import DeclaredNodeTypes, NodeTypeInUseError

DEFINITION = {
    "displayName": "Contacts",
    "requestTemplate": {"url": "https://crm.example.com/contacts"},
}


async def _workspace(database: Database, name: str) -> tuple[str, str]:
    async with database.transaction() as session:
        user = await accounts.create_user(session, name)
    return user.id, user.personal_workspace_id


async def test_versions_count_up_and_survive_deletion(database: Database) -> None:
    user_id, workspace = await _workspace(database, "owner")
    async with database.transaction() as session:
        first = await node_type_definitions.create_type(
            session, workspace, "ws.contacts", DEFINITION, user_id
        )
        second = await node_type_definitions.update_type(
            session, workspace, "ws.contacts", {**DEFINITION, "displayName": "Two"}, user_id
        )
    assert (first.version, second.version) == (1, 2)
    async with database.session() as session:
        before = await node_type_definitions.version_ids(session, [workspace])
        with pytest.raises(DuplicateNameError):
            await node_type_definitions.create_type(
                session, workspace, "ws.contacts", DEFINITION, user_id
            )
    assert before == sorted([first.id, second.id])
    async with database.transaction() as session:
        await node_type_definitions.delete_type(session, workspace, "ws.contacts")
    async with database.session() as session:
        assert await node_type_definitions.current_versions(session, [workspace]) == []
        assert await node_type_definitions.version_ids(session, [workspace]) == []
        with pytest.raises(NotFoundError):
            await node_type_definitions.update_type(
                session, workspace, "ws.contacts", DEFINITION, user_id
            )
    async with database.transaction() as session:
        again = await node_type_definitions.create_type(
            session, workspace, "ws.contacts", DEFINITION, user_id
        )
    assert again.version == 3  # never 1 again: a pinned version 1 means one definition


async def test_a_type_used_by_a_draft_or_a_published_version_is_not_deleted(
    database: Database,
) -> None:
    user_id, workspace = await _workspace(database, "owner")
    nodes = [{"id": "c", "name": "C", "type": "ws.contacts", "typeVersion": 1}]
    async with database.transaction() as session:
        await node_type_definitions.create_type(
            session, workspace, "ws.contacts", DEFINITION, user_id
        )
        row = Workflow(workspace_id=workspace, name="uses it", nodes=nodes, created_by=user_id)
        await workflows.create_workflow(session, row)
    async with database.transaction() as session:
        with pytest.raises(NodeTypeInUseError) as refused:
            await node_type_definitions.delete_type(session, workspace, "ws.contacts")
    assert refused.value.workflows == [(row.id, "uses it")]
    # Published, then the draft changed: the published version still uses it.
    async with database.transaction() as session:
        await workflows.publish(session, row.id, [workspace], 1, user_id)  # (row, changed)
        change = workflows.DraftChange(nodes=[], edges=[], node_issues={})
        await workflows.update_draft(session, row.id, [workspace], 1, change)
    async with database.transaction() as session:
        with pytest.raises(NodeTypeInUseError):
            await node_type_definitions.delete_type(session, workspace, "ws.contacts")


async def test_each_workspace_sees_its_own_types(
    database: Database, registry: NodeTypeRegistry
) -> None:
    user_id, workspace = await _workspace(database, "owner")
    _, other = await _workspace(database, "other")
    async with database.transaction() as session:
        await node_type_definitions.create_type(
            session, workspace, "ws.contacts", DEFINITION, user_id
        )
    declared = DeclaredNodeTypes(database, registry)
    mine = await declared.for_workspace(workspace)
    assert isinstance(mine, WorkspaceNodeTypes)
    assert mine.get("ws.contacts") is not None and mine.latest_version("ws.contacts") == 1
    assert mine.get("http_request") is registry.get("http_request")
    assert [t.name for t in mine.latest()] == sorted(t.name for t in mine.latest())
    assert await declared.for_workspace(other) is registry  # none of its own: no view
    # A stored version is compiled once per process.
    again = await declared.for_workspace(workspace)
    assert again.get("ws.contacts") is mine.get("ws.contacts")
    assert again.revision == mine.revision != registry.revision
