"""The exported SDL matches the code, every type and field is described, and the contract holds."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import strawberry
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    is_specified_scalar_type,
)

from schema.root import build_schema

REPO = Path(__file__).resolve().parents[2]
REGENERATE = "regenerate it with `loom export-schema`"


def _graphql_schema() -> GraphQLSchema:
    return build_schema()._schema


def test_schema_graphql_matches_the_code():
    exported = (REPO / "schema.graphql").read_text(encoding="utf-8")
    assert exported == build_schema().as_str() + "\n", f"schema.graphql is stale; {REGENERATE}"


async def test_export_schema_command_prints_the_same_sdl(tmp_path):
    process = await asyncio.create_subprocess_exec(
        Path(sys.executable).with_name("loom"),
        "export-schema",
        "--output",
        "-",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    assert stdout.decode() == build_schema().as_str() + "\n"


def _undescribed(schema: GraphQLSchema) -> list[str]:
    missing = []
    for name, graphql_type in schema.type_map.items():
        if name.startswith("__") or is_specified_scalar_type(graphql_type):
            continue
        if not (graphql_type.description or "").strip():
            missing.append(name)
        if isinstance(
            graphql_type, GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType
        ):
            fields = graphql_type.fields
        elif isinstance(graphql_type, GraphQLEnumType):
            fields = graphql_type.values
        else:
            fields = {}
        missing += [
            f"{name}.{field_name}"
            for field_name, field in fields.items()
            if not (field.description or "").strip()
        ]
    return missing


def test_every_type_and_field_has_a_description():
    assert _undescribed(_graphql_schema()) == []


def test_the_description_check_sees_fields():
    """The walk above does reach fields, input fields, enum values and unions."""
    types = [t for n, t in _graphql_schema().type_map.items() if not n.startswith("__")]
    for kind in (GraphQLObjectType, GraphQLInputObjectType, GraphQLEnumType, GraphQLUnionType):
        assert any(isinstance(t, kind) for t in types), kind


# The names the frontend relies on (DESIGN.md, "GraphQL API contract").

CONTRACT_QUERIES = {
    "viewer": [],
    "workflows": ["first", "after", "filter"],
    "workflow": ["id"],
    "workflowVersion": ["id", "version"],
    "nodeTypes": [],
    "nodeType": ["name"],
}
CONTRACT_MUTATIONS = {
    "createWorkflow": ["input"],
    "updateWorkflow": ["id", "input", "expectedVersion"],
    "deleteWorkflow": ["id"],
    "duplicateWorkflow": ["id"],
    "addNode": ["workflowId", "node", "expectedVersion"],
    "updateNode": ["workflowId", "nodeId", "node", "expectedVersion"],
    "removeNode": ["workflowId", "nodeId", "expectedVersion"],
    "addEdge": ["workflowId", "edge", "expectedVersion"],
    "removeEdge": ["workflowId", "edge", "expectedVersion"],
    "publishWorkflow": ["id", "expectedVersion"],
    "setWorkflowActive": ["id", "active"],
}
CONTRACT_INPUTS = {
    "WorkflowInput": {"name", "description", "nodes", "edges", "settings", "tags"},
    "NodeInput": {
        "id",
        "name",
        "type",
        "typeVersion",
        "parameters",
        "position",
        "disabled",
        "retry",
        "timeoutSeconds",
        "onError",
    },
    "EdgeInput": {"source", "sourceOutput", "target", "targetInput"},
}
CONTRACT_TYPES = {
    "Workflow": {"id", "name", "version", "publishedVersion", "active", "nodes", "edges"},
    "WorkflowResult": set(),
}


def test_contract_names_are_present():
    schema = _graphql_schema()
    for root, expected in (
        (schema.query_type, CONTRACT_QUERIES),
        (schema.mutation_type, CONTRACT_MUTATIONS),
    ):
        assert root is not None
        for field_name, arguments in expected.items():
            assert field_name in root.fields, field_name
            assert set(arguments) <= set(root.fields[field_name].args), field_name
    for type_name, fields in CONTRACT_INPUTS.items():
        assert fields <= set(schema.type_map[type_name].fields), type_name
    assert CONTRACT_TYPES["Workflow"] <= set(schema.type_map["Workflow"].fields)
    result = schema.type_map["WorkflowResult"]
    assert isinstance(result, GraphQLUnionType)
    assert {t.name for t in result.types} == {
        "Workflow",
        "ValidationError",
        "NotFoundError",
        "VersionConflictError",
        # Issue 18: a role that may read a workflow but not change it.
        "ForbiddenError",
    }
    edge_input = schema.type_map["EdgeInput"].fields
    assert edge_input["sourceOutput"].default_value == "main"
    assert edge_input["targetInput"].default_value == "main"
    problem = schema.type_map["Problem"].fields
    assert {"code", "message", "nodeId", "field"} <= set(problem)


def test_the_description_check_finds_what_is_missing():
    @strawberry.type(description="Described.")
    class Query:
        described: int = strawberry.field(description="Yes.")
        bare: int

    missing = _undescribed(strawberry.Schema(query=Query)._schema)
    assert missing == ["Query.bare"]


def test_plain_fields_are_resolved_by_a_direct_attribute_getter():
    # A Strawberry release that stops marking default resolvers would silently undo this
    # optimisation (about a quarter of a large query's time); this test notices.
    from schema.root import build_schema

    assert build_schema().plain_fields_resolved_directly > 50
