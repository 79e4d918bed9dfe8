"""Declarative node types over GraphQL: created, updated and deleted in a workspace, seen
by that workspace only, run end to end against a real local API (request template,
response mapping, pagination, credentials, the SSRF guard), and every bad input refused
with all its problems at once."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web

from engine.node_types import NodeGroup, NodeType
from resolvers.node_types import _catalogs, _results
from server.app import create_app
from tests.api.test_credentials import create as create_credential
from tests.api.test_executions import create, execute, finished
from tests.api.test_export_import import EXPORT, IMPORT
from tests.api.test_webhooks import hook_workflow
from tests.conftest import Caller
from tests.factories import CREATE, UPGRADE_NODE, edge, node

TYPE_FIELDS = "name version versions displayName group credentialKinds category definition"
RESULT = f"""
  __typename
  ... on NodeType {{ {TYPE_FIELDS} }}
  ... on ValidationError {{ message problems {{ code message field }} }}
  ... on NotFoundError {{ message id }}
"""
CREATE_TYPE = f"""
mutation($ws: ID, $name: String!, $input: DeclarativeNodeTypeInput!) {{
  createNodeType(workspaceId: $ws, name: $name, input: $input) {{ {RESULT} }}
}}
"""
UPDATE_TYPE = f"""
mutation($ws: ID, $name: String!, $input: DeclarativeNodeTypeInput!) {{
  updateNodeType(workspaceId: $ws, name: $name, input: $input) {{ {RESULT} }}
}}
"""
DELETE_TYPE = """
mutation($ws: ID, $name: String!) {
  deleteNodeType(workspaceId: $ws, name: $name) {
    __typename
    ... on Deleted { id }
    ... on NotFoundError { message }
    ... on InUseError { message workflows { id name } }
  }
}
"""
NAMES = "query($ws: ID) { nodeTypes(workspaceId: $ws) { name version } }"
ONE = f"""
query($ws: ID, $name: String!) {{ nodeType(name: $name, workspaceId: $ws) {{ {TYPE_FIELDS} }} }}
"""


@dataclass
class Crm:
    """A small local API: contacts, paged two ways, and what it was sent."""

    base: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)
    # What `/pages` answers as `elsewhere`: a next page on another origin.
    elsewhere: str | None = None


@pytest.fixture
async def crm() -> AsyncIterator[Crm]:
    mock = Crm()

    async def contacts(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        mock.seen.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "authorization": request.headers.get("Authorization"),
                "x_source": request.headers.get("X-Source"),
                "body": body,
            }
        )
        if request.method == "POST":
            return web.json_response(
                {"data": {"contact": {"id": 7, "secret": "s", **(body or {})}}}
            )
        return web.json_response({"data": {"items": [{"id": 1}, {"id": 2}]}})

    async def pages(request: web.Request) -> web.Response:
        page = int(request.query.get("page", "1"))
        mock.seen.append(
            {
                "path": request.path,
                "query": dict(request.query),
                "authorization": request.headers.get("Authorization"),
            }
        )
        following = f"/pages?page={page + 1}" if page < 5 else None
        return web.json_response(
            {"items": [{"page": page}], "next": following, "elsewhere": mock.elsewhere}
        )

    async def cursors(request: web.Request) -> web.Response:
        cursor = int(request.query.get("cursor", "0"))
        mock.seen.append({"path": request.path, "query": dict(request.query)})
        return web.json_response(
            {"results": [{"at": cursor}], "meta": {"next": cursor + 1 if cursor < 2 else None}}
        )

    app = web.Application()
    app.router.add_route("*", "/contacts", contacts)
    app.router.add_get("/pages", pages)
    app.router.add_get("/cursors", cursors)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    mock.base = f"http://127.0.0.1:{port}"
    yield mock
    await runner.cleanup()


@pytest.fixture
async def app(database, settings, registry) -> AsyncIterator[Any]:
    allowed = settings.model_copy(update={"http_allowed_networks": ["127.0.0.1/32"]})
    app = create_app(allowed, database=database, registry=registry)
    yield app
    await app.state.services.submitter.runner.resources.http.close()


@pytest.fixture(autouse=True)
def no_results_kept() -> None:
    _results.clear()
    _catalogs.clear()


def create_contact(base: str, **extra: Any) -> dict[str, Any]:
    """A type that posts a contact built from its parameters and the item."""
    return {
        "displayName": "Create contact",
        "description": "Creates a contact in the CRM.",
        "parametersSchema": {
            "type": "object",
            "properties": {
                "email": {"type": "string", "title": "Email"},
                "source": {"type": "string", "default": "loom"},
            },
            "required": ["email"],
        },
        "credentialKinds": ["bearer_token"],
        "catalog": {
            "category": "CRM",
            "icon": "fa:user",
            "parameterHints": [{"name": "email", "placeholder": "ada@example.com"}],
        },
        "requestTemplate": {
            "method": "POST",
            "url": f"{base}/contacts",
            "headers": {"X-Source": "{{ $parameter.source }}"},
            "body": {"email": "{{ $parameter.email }}", "name": "{{ $json.name }}"},
        },
        "responseMapping": {"select": "data.contact", "drop": ["secret"]},
        **extra,
    }


async def workspace_of(caller: Caller) -> str:
    data = await caller.gql("{ viewer { personalWorkspace { id } } }")
    return str(data["viewer"]["personalWorkspace"]["id"])


async def create_type(
    caller: Caller, name: str, definition: dict[str, Any], ws: str | None = None
) -> dict[str, Any]:
    data = await caller.gql(CREATE_TYPE, {"ws": ws, "name": name, "input": definition})
    return dict(data["createNodeType"])


async def run_nodes(
    app: Any, caller: Caller, nodes: list[dict[str, Any]], items: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Start -> the items (split out of the input's `rows`) -> the given nodes in a line."""
    first = [
        node("start", "Start", "manual_trigger"),
        node("split", "Split", "split_out", parameters={"field": "rows"}),
    ]
    chain = first + nodes
    edges = [edge(chain[i]["id"], chain[i + 1]["id"]) for i in range(len(chain) - 1)]
    workflow_id = await create(caller, chain, edges)
    started = await execute(caller, workflow_id, input={"rows": items or [{}]})
    assert started["__typename"] == "Execution", started
    return await finished(app, caller, started["id"])


def output_of(execution: dict[str, Any], node_id: str) -> list[dict[str, Any]]:
    run = next(run for run in execution["nodeRuns"] if run["nodeId"] == node_id)
    assert run["status"] == "SUCCEEDED", run
    return list(run["output"])


# Creating, seeing, updating, deleting


async def test_a_created_type_shows_in_its_workspace_only(alice: Caller, bob: Caller, crm: Crm):
    ws = await workspace_of(alice)
    created = await create_type(alice, "ws.crm_create_contact", create_contact(crm.base), ws)
    assert created["__typename"] == "NodeType", created
    assert created["version"] == 1 and created["versions"] == [1]
    assert created["group"] == "ACTION" and created["category"] == "CRM"
    assert created["credentialKinds"] == ["bearer_token"]
    assert created["definition"]["requestTemplate"]["method"] == "POST"
    names = {t["name"] for t in (await alice.gql(NAMES, {"ws": ws}))["nodeTypes"]}
    assert "ws.crm_create_contact" in names and "http_request" in names
    # Without a workspace: the installed types only.
    assert "ws.crm_create_contact" not in {t["name"] for t in (await alice.gql(NAMES))["nodeTypes"]}
    # Bob's workspace does not have it; Alice's workspace is not Bob's to ask about.
    theirs = await workspace_of(bob)
    assert "ws.crm_create_contact" not in {
        t["name"] for t in (await bob.gql(NAMES, {"ws": theirs}))["nodeTypes"]
    }
    assert (await bob.gql(ONE, {"ws": theirs, "name": "ws.crm_create_contact"}))["nodeType"] is None
    refused = (await bob.post(NAMES, {"ws": ws})).json()
    assert refused["errors"][0]["message"] == f"workspace {ws!r} not found among yours"
    # Creating in another's workspace is refused the same way.
    result = await create_type(bob, "ws.mine", create_contact(crm.base), ws)
    assert result["__typename"] == "NotFoundError"


async def test_creating_and_updating_show_in_the_next_catalog_query(alice: Caller, crm: Crm):
    """The catalog query results kept by `NodeTypeResults` depend on the workspace's types."""
    ws = await workspace_of(alice)
    before = await alice.gql(NAMES, {"ws": ws})
    assert await alice.gql(NAMES, {"ws": ws}) == before  # kept
    assert len(_results) == 1
    await create_type(alice, "ws.crm_create_contact", create_contact(crm.base), ws)
    after = {t["name"]: t["version"] for t in (await alice.gql(NAMES, {"ws": ws}))["nodeTypes"]}
    assert after["ws.crm_create_contact"] == 1
    updated = await alice.gql(
        UPDATE_TYPE,
        {"ws": ws, "name": "ws.crm_create_contact", "input": create_contact(crm.base)},
    )
    assert updated["updateNodeType"]["version"] == 2
    assert updated["updateNodeType"]["versions"] == [1, 2]
    latest = {t["name"]: t["version"] for t in (await alice.gql(NAMES, {"ws": ws}))["nodeTypes"]}
    assert latest["ws.crm_create_contact"] == 2


async def test_a_workspace_catalog_shares_the_installed_types_entries(app, alice: Caller, crm):
    ws = await workspace_of(alice)
    await create_type(alice, "ws.crm_create_contact", create_contact(crm.base), ws)
    await alice.gql(NAMES)
    await alice.gql(NAMES, {"ws": ws})
    revision = app.state.services.registry.revision
    installed = {mapped.name: mapped for mapped, _ in _catalogs[revision]}
    ((_, view),) = [
        (key, entries)
        for key, entries in _catalogs.items()
        if isinstance(key, tuple) and key[0] == revision
    ]
    assert [mapped.name for mapped, _ in view] == sorted([*installed, "ws.crm_create_contact"])
    assert all(installed[m.name] is m for m, _ in view if m.name in installed)


async def test_a_cached_catalog_answer_is_never_another_callers(
    alice: Caller, bob: Caller, crm: Crm
):
    ws = await workspace_of(alice)
    await create_type(alice, "ws.crm_create_contact", create_contact(crm.base), ws)
    assert "ws.crm_create_contact" in {
        t["name"] for t in (await alice.gql(NAMES, {"ws": ws}))["nodeTypes"]
    }
    # The same document and variables from Bob is not answered from Alice's result.
    refused = (await bob.post(NAMES, {"ws": ws})).json()
    assert refused["errors"][0]["message"] == f"workspace {ws!r} not found among yours"


async def test_nobody_changes_another_workspaces_types(
    alice: Caller, bob: Caller, crm: Crm, db_state
):
    ws = await workspace_of(alice)
    await create_type(alice, "ws.crm_create_contact", create_contact(crm.base), ws)
    before = await db_state()
    name = "ws.crm_create_contact"
    for operation, variables, field_name in (
        (
            CREATE_TYPE,
            {"ws": ws, "name": "ws.other", "input": create_contact(crm.base)},
            "createNodeType",
        ),
        (
            UPDATE_TYPE,
            {"ws": ws, "name": name, "input": create_contact(crm.base)},
            "updateNodeType",
        ),
        (DELETE_TYPE, {"ws": ws, "name": name}, "deleteNodeType"),
        # In his own workspace the name is nobody's type.
        (UPDATE_TYPE, {"name": name, "input": create_contact(crm.base)}, "updateNodeType"),
        (DELETE_TYPE, {"name": name}, "deleteNodeType"),
    ):
        result = (await bob.gql(operation, variables))[field_name]
        assert result["__typename"] == "NotFoundError", (field_name, result)
    assert await db_state() == before


async def test_update_and_delete_of_a_missing_type_are_not_found(alice: Caller, crm: Crm):
    updated = await alice.gql(
        UPDATE_TYPE, {"name": "ws.nothing", "input": create_contact(crm.base)}
    )
    assert updated["updateNodeType"]["__typename"] == "NotFoundError"
    deleted = await alice.gql(DELETE_TYPE, {"name": "ws.nothing"})
    assert deleted["deleteNodeType"]["__typename"] == "NotFoundError"


async def test_a_type_in_use_is_not_deleted_and_a_deleted_name_continues_its_numbering(
    alice: Caller, crm: Crm
):
    await create_type(alice, "ws.crm_create_contact", create_contact(crm.base))
    workflow_id = await create(
        alice,
        [node("c", "Contact", "ws.crm_create_contact", parameters={"email": "a@b.c"})],
        [],
    )
    refused = (await alice.gql(DELETE_TYPE, {"name": "ws.crm_create_contact"}))["deleteNodeType"]
    assert refused["__typename"] == "InUseError"
    assert refused["workflows"] == [{"id": workflow_id, "name": "Run me"}]
    assert (
        await alice.gql(ONE, {"name": "ws.crm_create_contact", "ws": await workspace_of(alice)})
    )["nodeType"]["version"] == 1
    await alice.gql(
        "mutation($id: ID!) { deleteWorkflow(id: $id) { __typename } }", {"id": workflow_id}
    )
    deleted = (await alice.gql(DELETE_TYPE, {"name": "ws.crm_create_contact"}))["deleteNodeType"]
    assert deleted == {"__typename": "Deleted", "id": "ws.crm_create_contact"}
    ws = await workspace_of(alice)
    assert (await alice.gql(ONE, {"name": "ws.crm_create_contact", "ws": ws}))["nodeType"] is None
    again = await create_type(alice, "ws.crm_create_contact", create_contact(crm.base))
    assert again["version"] == 2 and again["versions"] == [2]


async def test_a_name_taken_in_the_workspace_is_refused(alice: Caller, crm: Crm):
    await create_type(alice, "ws.crm_create_contact", create_contact(crm.base))
    again = await create_type(alice, "ws.crm_create_contact", create_contact(crm.base))
    assert again["__typename"] == "ValidationError"
    assert again["problems"][0]["code"] == "DUPLICATE_NAME"


# Running


async def test_a_workflow_runs_a_declarative_type_end_to_end(app, alice: Caller, crm: Crm):
    await create_type(alice, "ws.crm_create_contact", create_contact(crm.base))
    token = await create_credential(alice, name="crm", kind="bearer_token", data={"token": "t0k"})
    execution = await run_nodes(
        app,
        alice,
        [
            node(
                "c",
                "Contact",
                "ws.crm_create_contact",
                parameters={"email": "{{ $json.name.toLowerCase() + '@example.com' }}"},
                credentials={"bearer_token": token["id"]},
            )
        ],
        items=[{"name": "Ada"}, {"name": "Grace"}],
    )
    assert execution["status"] == "SUCCEEDED", execution
    assert output_of(execution, "c") == [
        {"id": 7, "email": "ada@example.com", "name": "Ada"},
        {"id": 7, "email": "grace@example.com", "name": "Grace"},
    ]
    assert [seen["body"] for seen in crm.seen] == [
        {"email": "ada@example.com", "name": "Ada"},
        {"email": "grace@example.com", "name": "Grace"},
    ]
    assert {seen["authorization"] for seen in crm.seen} == {"Bearer t0k"}
    assert {seen["x_source"] for seen in crm.seen} == {"loom"}  # the schema's default


async def test_splitting_and_keeping_fields(app, alice: Caller, crm: Crm):
    definition = {
        "displayName": "List contacts",
        "requestTemplate": {"url": f"{crm.base}/contacts", "query": {"q": "{{ $json.q }}"}},
        "responseMapping": {"select": "data.items", "split": True, "keep": ["id"]},
    }
    await create_type(alice, "ws.list_contacts", definition)
    execution = await run_nodes(
        app, alice, [node("l", "List", "ws.list_contacts")], items=[{"q": "x"}, {}]
    )
    assert output_of(execution, "l") == [{"id": 1}, {"id": 2}, {"id": 1}, {"id": 2}]
    # A query entry rendered to null is left out.
    assert [seen["query"] for seen in crm.seen] == [{"q": "x"}, {}]


async def test_next_url_pagination_stops_at_the_page_cap(app, alice: Caller, crm: Crm):
    definition = {
        "displayName": "Pages",
        "requestTemplate": {"url": f"{crm.base}/pages"},
        "responseMapping": {"select": "items", "split": True},
        "pagination": {"nextUrl": "next", "maxPages": 3},
    }
    await create_type(alice, "ws.pages", definition)
    execution = await run_nodes(app, alice, [node("p", "Pages", "ws.pages")])
    assert output_of(execution, "p") == [{"page": 1}, {"page": 2}, {"page": 3}]
    assert len(crm.seen) == 3
    # Under a cap above the last page, every page and then no more.
    crm.seen.clear()
    definition["pagination"] = {"nextUrl": "next", "maxPages": 50}
    await alice.gql(UPDATE_TYPE, {"name": "ws.pages", "input": definition})
    execution = await run_nodes(app, alice, [node("p", "Pages", "ws.pages", typeVersion=2)])
    assert [item["page"] for item in output_of(execution, "p")] == [1, 2, 3, 4, 5]


async def test_a_next_page_on_another_origin_gets_no_credential(app, alice: Caller, crm: Crm):
    """The credential goes to the first request's origin only, as on a redirect: a next-page
    URL naming another origin (here: the same server by another name) is sent without it."""
    port = crm.base.rsplit(":", 1)[1]
    elsewhere = f"http://localhost:{port}"
    definition = {
        "displayName": "Pages",
        "credentialKinds": ["bearer_token"],
        "requestTemplate": {"url": f"{crm.base}/pages"},
        "responseMapping": {"select": "items", "split": True},
        "pagination": {"nextUrl": "next", "maxPages": 2},
    }
    await create_type(alice, "ws.pages", definition)
    token = await create_credential(alice, name="crm", kind="bearer_token", data={"token": "t0k"})
    # Relative next URLs stay on the origin: the credential goes along.
    execution = await run_nodes(
        app,
        alice,
        [node("p", "Pages", "ws.pages", credentials={"bearer_token": token["id"]})],
    )
    assert [item["page"] for item in output_of(execution, "p")] == [1, 2]
    assert [seen["authorization"] for seen in crm.seen] == ["Bearer t0k", "Bearer t0k"]
    crm.seen.clear()
    definition["pagination"] = {"nextUrl": "elsewhere", "maxPages": 2}
    await alice.gql(UPDATE_TYPE, {"name": "ws.pages", "input": definition})
    crm.elsewhere = f"{elsewhere}/pages?page=2"
    execution = await run_nodes(
        app,
        alice,
        [
            node(
                "p",
                "Pages",
                "ws.pages",
                typeVersion=2,
                credentials={"bearer_token": token["id"]},
            )
        ],
    )
    assert execution["status"] == "SUCCEEDED", execution
    assert [seen["authorization"] for seen in crm.seen] == ["Bearer t0k", None]


async def test_a_credential_of_a_kind_the_type_does_not_take_fails_the_node(
    app, alice: Caller, crm: Crm
):
    definition = {"displayName": "Open", "requestTemplate": {"url": f"{crm.base}/contacts"}}
    await create_type(alice, "ws.open", definition)
    token = await create_credential(alice, name="crm", kind="bearer_token", data={"token": "t0k"})
    execution = await run_nodes(
        app, alice, [node("o", "Open", "ws.open", credentials={"bearer_token": token["id"]})]
    )
    run = next(run for run in execution["nodeRuns"] if run["nodeId"] == "o")
    assert run["error"]["type"] == "INVALID_CREDENTIAL"
    assert crm.seen == []


async def test_cursor_pagination_sends_the_cursor_back(app, alice: Caller, crm: Crm):
    definition = {
        "displayName": "Cursors",
        "requestTemplate": {"url": f"{crm.base}/cursors", "query": {"limit": 1}},
        "responseMapping": {"select": "results", "split": True},
        "pagination": {"cursor": "meta.next", "cursorParameter": "cursor", "maxPages": 10},
    }
    await create_type(alice, "ws.cursors", definition)
    execution = await run_nodes(app, alice, [node("c", "Cursors", "ws.cursors")])
    assert output_of(execution, "c") == [{"at": 0}, {"at": 1}, {"at": 2}]
    assert [seen["query"] for seen in crm.seen] == [
        {"limit": "1"},
        {"limit": "1", "cursor": "1"},
        {"limit": "1", "cursor": "2"},
    ]


async def test_a_node_keeps_its_version_until_upgraded(app, alice: Caller, crm: Crm):
    first = {
        "displayName": "Contacts",
        "requestTemplate": {"url": f"{crm.base}/contacts"},
        "responseMapping": {"select": "data.items", "split": True},
    }
    await create_type(alice, "ws.contacts", first)
    data = await alice.gql(
        CREATE,
        {"input": {"name": "w", "nodes": [node("c", "C", "ws.contacts")], "edges": []}},
    )
    workflow = data["createWorkflow"]
    assert workflow["nodes"][0]["typeVersion"] == 1
    second = {**first, "responseMapping": {"select": "data.items", "split": False}}
    await alice.gql(UPDATE_TYPE, {"name": "ws.contacts", "input": second})
    upgraded = await alice.gql(
        UPGRADE_NODE, {"wf": workflow["id"], "nodeId": "c", "to": 2, "v": workflow["version"]}
    )
    assert upgraded["upgradeNode"]["nodes"][0]["typeVersion"] == 2, upgraded


async def test_a_published_workflow_runs_a_declarative_type_from_its_webhook(
    app, http: httpx.AsyncClient, alice: Caller, crm: Crm
):
    await create_type(alice, "ws.crm_create_contact", create_contact(crm.base))
    contact = node(
        "c",
        "Contact",
        "ws.crm_create_contact",
        parameters={"email": "{{ $json.body.email }}"},
    )
    await hook_workflow(alice, {"path": "signup", "responseMode": "last_node"}, [contact])
    response = await http.post("/webhook/signup", json={"email": "ada@example.com"})
    assert response.status_code == 200, response.text
    assert response.json() == [{"id": 7, "email": "ada@example.com", "name": None}]


async def test_an_exported_workflow_imports_with_its_workspace_types(
    alice: Caller, bob: Caller, crm: Crm
):
    await create_type(alice, "ws.crm_create_contact", create_contact(crm.base))
    workflow_id = await create(
        alice,
        [node("c", "Contact", "ws.crm_create_contact", parameters={"email": "a@b.c"})],
        [],
    )
    exported = (await alice.gql(EXPORT, {"id": workflow_id}))["exportWorkflow"]
    mine = (await alice.gql(IMPORT, {"document": exported["document"]}))["importWorkflow"]
    assert mine["__typename"] == "Workflow", mine
    assert mine["nodes"][0]["issues"] == [] and mine["runnable"] is True
    # In another workspace the type is not there: the node is kept with the issue.
    theirs = (await bob.gql(IMPORT, {"document": exported["document"]}))["importWorkflow"]
    assert [issue["code"] for issue in theirs["nodes"][0]["issues"]] == ["UNKNOWN_NODE_TYPE"]


async def test_another_workspaces_type_is_an_unknown_node_type(alice: Caller, bob: Caller, crm):
    await create_type(alice, "ws.crm_create_contact", create_contact(crm.base))
    data = await bob.gql(
        CREATE,
        {
            "input": {
                "name": "w",
                "nodes": [node("c", "C", "ws.crm_create_contact", parameters={"email": "x"})],
                "edges": [],
            }
        },
    )
    result = data["createWorkflow"]
    assert result["__typename"] == "ValidationError"
    assert [(p["code"], p["field"]) for p in result["problems"]] == [("UNKNOWN_NODE_TYPE", "type")]


async def test_the_ssrf_guard_applies(database, settings, registry, alice: Caller, crm: Crm):
    app = create_app(settings, database=database, registry=registry)  # loopback not allowed
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://loom.test") as http:
            caller = dataclasses.replace(alice, http=http)
            definition = {
                "displayName": "Contacts",
                "requestTemplate": {"url": f"{crm.base}/contacts", "retry": {"maxAttempts": 1}},
            }
            await create_type(caller, "ws.contacts", definition)
            execution = await run_nodes(app, caller, [node("c", "C", "ws.contacts")])
            run = next(run for run in execution["nodeRuns"] if run["nodeId"] == "c")
            assert run["error"]["type"] == "HTTP_DESTINATION_REFUSED"
    finally:
        await app.state.services.submitter.runner.resources.http.close()
    assert crm.seen == []


# Bad input: every problem at once, with its path; nothing stored


async def problems_of(
    caller: Caller, name: str, definition: dict[str, Any]
) -> list[tuple[str, str]]:
    result = await create_type(caller, name, definition)
    assert result["__typename"] == "ValidationError", result
    ws = await workspace_of(caller)
    found = (await caller.gql(ONE, {"name": name, "ws": ws}))["nodeType"]
    assert found is None or found["definition"] is None  # none, or an installed one
    return [(problem["code"], problem["field"]) for problem in result["problems"]]


async def test_an_invalid_json_schema(alice: Caller, crm: Crm):
    definition = create_contact(crm.base, parametersSchema={"type": "object", "properties": 3})
    definition["catalog"] = {}
    assert await problems_of(alice, "ws.bad", definition) == [
        ("INVALID_PARAMETERS_SCHEMA", "parametersSchema.properties")
    ]


async def test_hints_naming_unknown_parameters(alice: Caller, crm: Crm):
    definition = create_contact(crm.base)
    definition["catalog"] = {
        "parameterHints": [{"name": "email"}, {"name": "phone"}],
        "defaults": {"fax": "1"},
    }
    assert await problems_of(alice, "ws.bad", definition) == [
        ("INVALID_CATALOG", "catalog.parameterHints[1].name"),
        ("INVALID_CATALOG", "catalog"),
    ]


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "example.com/{{ $parameter.path }}", "http://", "https://a b/c"],
)
async def test_a_url_template_that_is_not_a_url(alice: Caller, url: str):
    definition = {"displayName": "Bad", "requestTemplate": {"url": url}}
    assert await problems_of(alice, "ws.bad", definition) == [
        ("INVALID_URL", "requestTemplate.url")
    ]


async def test_a_url_template_may_start_with_an_expression_or_a_scheme(alice: Caller):
    for index, url in enumerate(("{{ $parameter.base }}/x", "http{{ 's' }}://example.com")):
        definition = {"displayName": "Fine", "requestTemplate": {"url": url}}
        assert (await create_type(alice, f"ws.fine_{index}", definition))[
            "__typename"
        ] == "NodeType"


@pytest.mark.parametrize(
    "name", ["http_request", "set", "ws.Bad", "ws.", "wsx.thing", "acme.greet"]
)
async def test_a_name_that_is_not_a_workspace_name(alice: Caller, crm: Crm, name: str):
    assert await problems_of(alice, name, create_contact(crm.base)) == [
        ("INVALID_NODE_TYPE_NAME", "name")
    ]


async def test_a_name_that_collides_with_an_installed_type(alice: Caller, crm: Crm, app):
    registry = app.state.services.registry
    taken = NodeType(
        name="ws.taken", version=1, display_name="T", description="T.", group=NodeGroup.ACTION
    )
    registry.register(taken)
    try:
        assert await problems_of(alice, "ws.taken", create_contact(crm.base)) == [
            ("NODE_TYPE_NAME_TAKEN", "name")
        ]
    finally:
        registry._by_name.pop("ws.taken")


async def test_every_problem_is_returned_at_once(alice: Caller):
    definition = {
        "displayName": "Many",
        "parametersSchema": {"type": "object", "properties": {"a": {"type": "string"}}},
        "credentialKinds": ["bearer_token", "carrier_pigeon"],
        "catalog": {"parameterHints": [{"name": "b"}]},
        "requestTemplate": {
            "url": "https://api.example.com/{{ $parameter.a +* 1 }}",
            "headers": {"X-A": "{{ $nothing }}"},
        },
        "responseMapping": {"keep": ["a"], "drop": ["b"]},
        "pagination": {"maxPages": 2},
    }
    assert await problems_of(alice, "Bad-Name", definition) == [
        ("INVALID_NODE_TYPE_NAME", "name"),
        ("UNKNOWN_CREDENTIAL_KIND", "credentialKinds[1]"),
        ("INVALID_CATALOG", "catalog.parameterHints[0].name"),
        ("EXPRESSION_SYNTAX", "requestTemplate.url"),
        ("EXPRESSION_SYNTAX", "requestTemplate.headers.X-A"),
        ("INVALID_PAGINATION", "pagination"),
        ("INVALID_RESPONSE_MAPPING", "responseMapping"),
    ]


async def test_a_malformed_definition_names_each_place(alice: Caller):
    definition = {
        "displayName": "",
        "requestTemplate": {"url": "https://x.test", "method": "FETCH", "extra": 1},
        "pagination": {"nextUrl": "next", "maxPages": 0},
    }
    assert sorted(await problems_of(alice, "ws.bad", definition)) == [
        ("INVALID_DEFINITION", "displayName"),
        ("INVALID_DEFINITION", "pagination.maxPages"),
        ("INVALID_DEFINITION", "requestTemplate"),
        ("INVALID_DEFINITION", "requestTemplate.method"),
    ]


async def test_saving_a_workflow_checks_parameters_against_the_types_schema(
    alice: Caller, crm: Crm
):
    await create_type(alice, "ws.crm_create_contact", create_contact(crm.base))
    data = await alice.gql(
        CREATE,
        {"input": {"name": "w", "nodes": [node("c", "C", "ws.crm_create_contact")], "edges": []}},
    )
    workflow = data["createWorkflow"]
    assert workflow["__typename"] == "Workflow", workflow
    issues = workflow["nodes"][0]["issues"]
    assert [(issue["code"], issue["severity"]) for issue in issues] == [
        ("MISSING_PARAMETER", "PARAMETER")
    ], issues


async def test_a_workspace_disables_its_own_declarative_type(
    app, alice: Caller, bob: Caller, crm: Crm
):
    ws = await workspace_of(alice)
    await create_type(alice, "ws.crm_create_contact", create_contact(crm.base), ws)
    mutation = """
    mutation($ws: ID, $enabled: Boolean!) {
      setNodeTypeEnabled(name: "ws.crm_create_contact", enabled: $enabled, workspaceId: $ws) {
        __typename ... on NodeType { enabled disabledReason versions }
        ... on ValidationError { problems { code field } }
      }
    }"""
    disabled = (await alice.gql(mutation, {"ws": ws, "enabled": False}))["setNodeTypeEnabled"]
    assert disabled["__typename"] == "NodeType", disabled
    assert (disabled["enabled"], disabled["versions"]) == (False, [1])
    workflow_id = await create(
        alice,
        [
            node("start", "Start", "manual_trigger"),
            node("c", "Create", "ws.crm_create_contact", parameters={"email": "a@b.c"}),
        ],
        [edge("start", "c")],
    )
    refused = await execute(alice, workflow_id)
    assert [p["code"] for p in refused["problems"]] == ["NODE_TYPE_DISABLED"]
    # Server-wide, or in another workspace, the name is not a type.
    for variables in ({"ws": None}, {"ws": await workspace_of(bob)}):
        caller = alice if variables["ws"] is None else bob
        answer = (await caller.gql(mutation, {**variables, "enabled": False}))["setNodeTypeEnabled"]
        assert answer["__typename"] == "ValidationError", answer
        assert answer["problems"][0]["code"] == "UNKNOWN_NODE_TYPE"


async def test_a_credential_goes_only_to_its_allowed_domains_from_a_declarative_node(
    app, alice: Caller, crm: Crm
):
    """allowedDomains hold for declarative types as for the HTTP Request node: to another
    host the node fails before anything is sent; pages on the allowed origin carry it."""
    port = crm.base.rsplit(":", 1)[1]
    definition = {
        "displayName": "Pages",
        "credentialKinds": ["bearer_token"],
        "parametersSchema": {"type": "object", "properties": {"host": {"type": "string"}}},
        "requestTemplate": {"url": f"http://{{{{ $parameter.host }}}}:{port}/pages"},
        "responseMapping": {"select": "items", "split": True},
        "pagination": {"nextUrl": "next", "maxPages": 2},
    }
    await create_type(alice, "ws.pages", definition)
    token = await create_credential(
        alice,
        name="crm",
        kind="bearer_token",
        data={"token": "t0k"},
        allowedDomains=["127.0.0.1"],
    )
    assert token["__typename"] == "Credential", token
    for host, allowed in (("localhost", False), ("127.0.0.1", True)):
        crm.seen.clear()
        execution = await run_nodes(
            app,
            alice,
            [
                node(
                    "p",
                    "Pages",
                    "ws.pages",
                    parameters={"host": host},
                    credentials={"bearer_token": token["id"]},
                )
            ],
        )
        if allowed:
            assert execution["status"] == "SUCCEEDED", execution
            assert [seen["authorization"] for seen in crm.seen] == ["Bearer t0k"] * 2
        else:
            run = next(run for run in execution["nodeRuns"] if run["nodeId"] == "p")
            assert run["error"]["type"] == "CREDENTIAL_HOST_NOT_ALLOWED", run
            assert "localhost" in run["error"]["message"]
            assert crm.seen == []
