"""Bad input of every kind: a typed error, nothing stored, and never a 500."""

from __future__ import annotations

import base64
import json

import pytest

from tests.factories import (
    CREATE,
    DELETE,
    GET,
    LIST,
    UPDATE,
    chain,
    create_workflow,
    edge,
    node,
    only,
    workflow_input,
)

JSON_HEADERS = {"Content-Type": "application/json"}
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"


def _auth(caller):
    return {"Authorization": f"Bearer {caller.token}"}


async def _post_raw(caller, body: bytes, content_type: str = "application/json"):
    return await caller.http.post(
        "/graphql", content=body, headers={**_auth(caller), "Content-Type": content_type}
    )


def _codes(body):
    return [error["extensions"]["code"] for error in body["errors"]]


async def _refused(caller, db_state, workflow, *codes):
    """createWorkflow with `workflow` is a ValidationError with `codes`, and stores nothing."""
    before = await db_state()
    result = only(await caller.gql(CREATE, {"input": workflow}))
    assert result["__typename"] == "ValidationError", result
    found = [problem["code"] for problem in result["problems"]]
    for code in codes:
        assert code in found, (code, result["problems"])
    assert await db_state() == before
    return result["problems"]


# The HTTP request itself


@pytest.mark.parametrize(
    "body",
    [
        b'{"query": ',
        b"{query: 1}",
        b"",
        b"\xff\xfe{}",
        b'{"query": "{ viewer { id } }"} trailing',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"query": "{ viewer { id } }", "variables": {"x": '
        + b"[" * 50_000
        + b"]" * 50_000
        + b"}}",
    ],
    ids=["truncated", "not json", "empty", "bad utf-8", "trailing", "deep array", "deep vars"],
)
async def test_malformed_json_body_is_400(alice, db_state, body):
    # Not a GraphQL request at all: a 400 whatever the client accepts, and no `data`.
    before = await db_state()
    response = await _post_raw(alice, body)
    assert response.status_code == 400, response.text
    body = response.json()
    assert "data" not in body
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert await db_state() == before


@pytest.mark.parametrize(
    "body",
    [
        b'"{ viewer { id } }"',
        b"42",
        b"null",
        b"true",
        b"[]",
        b'[{"query": "{ viewer { id } }"}]',
        b'{"query": 42}',
        b'{"query": ["{ viewer { id } }"]}',
        b'{"query": "{ viewer { id } }", "variables": [1]}',
        b'{"query": "{ viewer { id } }", "variables": "x"}',
        b'{"query": "{ viewer { id } }", "extensions": 1}',
        b'{"variables": {}}',
        b"{}",
    ],
)
async def test_json_of_the_wrong_shape_is_400(alice, body):
    response = await _post_raw(alice, body)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"]


async def test_nan_parameters_store_nothing(alice, db_state):
    variables = json.dumps({"input": workflow_input(nodes=[node("a", parameters={"x": 1})])})
    body = f'{{"query": {json.dumps(CREATE)}, "variables": {variables}}}'.replace(
        '{"x": 1}', '{"x": NaN}'
    )
    assert "NaN" in body
    before = await db_state()
    response = await _post_raw(alice, body.encode())
    assert response.status_code == 400
    assert await db_state() == before


@pytest.mark.parametrize(
    "params",
    [
        {"query": "{ viewer { id } }", "variables": "{bad"},
        {"query": "{ viewer { id } }", "variables": "5"},
        {"query": "{ viewer { id } }", "variables": "[" * 5_000},
        {"query": "{ viewer { id } }", "extensions": "{bad"},
    ],
    ids=["malformed variables", "scalar variables", "deep variables", "bad extensions"],
)
async def test_malformed_get_requests_are_400(alice, params):
    response = await alice.http.get("/graphql", params=params, headers=_auth(alice))
    assert response.status_code == 400, response.text


@pytest.mark.parametrize(
    ("document", "operation_name", "message"),
    [
        ("query A { viewer { id } }", "Missing", "Unknown operation named 'Missing'."),
        (
            "query A { viewer { id } } query B { viewer { name } }",
            None,
            "Must provide operation name if query contains multiple operations.",
        ),
        (
            f"mutation A {CREATE.strip().removeprefix('mutation')} query B {{ viewer {{ id }} }}",
            None,
            "Must provide operation name if query contains multiple operations.",
        ),
        ("query A { viewer { id } } query B { viewer { name } }", "C", "Unknown operation"),
        ("fragment F on User { id }", None, "Fragment 'F' is never used."),
    ],
    ids=[
        "unknown name",
        "two operations, no name",
        "a mutation first, no name",
        "two operations, unknown name",
        "no operation",
    ],
)
async def test_unrunnable_documents_are_request_errors(
    alice, db_state, document, operation_name, message
):
    # The GraphQL spec's GetOperation: with several operations the request must name one.
    before = await db_state()
    body = await alice.request_error(
        document, {"input": workflow_input()}, operationName=operation_name
    )
    assert [error["extensions"]["code"] for error in body["errors"]] == [
        "GRAPHQL_VALIDATION_FAILED"
    ]
    assert body["errors"][0]["message"].startswith(message), body
    assert await db_state() == before


@pytest.mark.parametrize("operation_name", [5, {"a": 1}, ["A"], False])
async def test_operation_name_that_is_not_a_string_is_400(alice, operation_name):
    response = await alice.post("query A { viewer { id } }", operationName=operation_name)
    assert response.status_code == 400, response.text
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "operationName" in error["message"]


async def test_operation_name_picks_the_operation(alice):
    response = await alice.http.post(
        "/graphql",
        json={
            "query": "query A { viewer { id } } query B { viewer { name } }",
            "operationName": "B",
        },
        headers=_auth(alice),
    )
    assert response.json() == {"data": {"viewer": {"name": "alice"}}}


async def test_unsupported_content_type_is_400(alice):
    response = await _post_raw(alice, b"{ viewer { id } }", "text/plain")
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_syntax_error_is_a_request_error_with_a_code(alice):
    (error,) = (await alice.request_error("{ viewer { id "))["errors"]
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert error["message"].startswith("Syntax Error")


async def test_deeply_nested_query_text_is_a_parse_error(alice):
    body = await alice.request_error("{" + "a {" * 3000 + "}" * 3001)
    assert _codes(body) == ["GRAPHQL_PARSE_FAILED"]


async def test_empty_query_is_400(alice):
    response = await alice.post("")
    assert response.status_code == 400


# Unknown fields, arguments, types and values: validation errors without suggestions


@pytest.mark.parametrize(
    ("operation", "variables"),
    [
        ("{ viewer { nam } }", {}),
        ("{ workflws { totalCount } }", {}),
        ("{ workflows(frist: 1) { totalCount } }", {}),
        ("query($f: WorkflowFiltr) { workflows(filter: $f) { totalCount } }", {}),
        ('{ workflows(filter: {nameContain: "x"}) { totalCount } }', {}),
        ("{ nodeTypes { group } }", {}),  # fine on its own: a control
        ('{ nodeType(name: "noop") { group(x: 1) } }', {}),
        (CREATE, {"input": {**workflow_input(), "nmae": "x"}}),
        (CREATE, {"input": workflow_input(nodes=[{**node("a"), "tpye": "noop"}], edges=[])}),
        (CREATE, {"input": workflow_input(nodes=[node("a", onError="STP")], edges=[])}),
        (
            'mutation { setWorkflowActive(id: "x", actve: true) { __typename } }',
            {},
        ),
        ("{ viewer { ... on Usr { id } } }", {}),
    ],
)
async def test_unknown_names_are_request_errors_without_suggestions(
    alice, db_state, operation, variables
):
    if operation == "{ nodeTypes { group } }":
        assert (await alice.post(operation)).status_code == 200
        return
    before = await db_state()
    body = await alice.request_error(operation, variables)
    assert set(_codes(body)) == {"GRAPHQL_VALIDATION_FAILED"}
    assert "did you mean" not in json.dumps(body).lower()
    assert await db_state() == before


# Wrong scalar types


@pytest.mark.parametrize(
    ("operation", "variables"),
    [
        (UPDATE, {"id": "x", "input": workflow_input(), "v": "1"}),
        (UPDATE, {"id": "x", "input": workflow_input(), "v": 1.5}),
        (UPDATE, {"id": "x", "input": workflow_input(), "v": 2**31}),
        (UPDATE, {"id": "x", "input": workflow_input(), "v": None}),
        (UPDATE, {"id": "x", "input": workflow_input()}),
        (CREATE, {"input": workflow_input(name=5)}),
        (CREATE, {"input": workflow_input(name=None)}),
        (CREATE, {"input": workflow_input(tags=[1])}),
        (CREATE, {"input": workflow_input(nodes=[node("a", position={"x": "1", "y": 0})])}),
        (CREATE, {"input": workflow_input(nodes=[node("a", disabled="yes")])}),
        (CREATE, {"input": workflow_input(nodes=[node("a", typeVersion=1.5)])}),
        (CREATE, {"input": workflow_input(nodes=[node("a", retry={"maxAttempts": "3"})])}),
        (CREATE, {"input": workflow_input(nodes=[{"id": "a", "type": "noop"}])}),
        (CREATE, {"input": workflow_input(edges=[{"source": "a"}])}),
        (CREATE, {"input": "not an object"}),
        (LIST, {"first": "ten"}),
        (LIST, {"first": 2.5}),
        (LIST, {"filter": {"active": "yes"}}),
        (LIST, {"after": 5}),
    ],
)
async def test_wrong_variable_types_are_request_errors(alice, db_state, operation, variables):
    before = await db_state()
    body = await alice.request_error(operation, variables)
    assert set(_codes(body)) == {"GRAPHQL_VALIDATION_FAILED"}
    assert "Did you mean" not in json.dumps(body)
    assert await db_state() == before


@pytest.mark.parametrize(
    "operation",
    [
        '{ workflows(first: "ten") { totalCount } }',
        "{ workflows(first: 1.5) { totalCount } }",
        "{ workflow(id: 1.5) { id } }",
        '{ workflowVersion(id: "x", version: "1") { id } }',
    ],
)
async def test_wrong_literal_types_are_request_errors(alice, operation):
    assert _codes(await alice.request_error(operation)) == ["GRAPHQL_VALIDATION_FAILED"]


# Pagination arguments


@pytest.mark.parametrize("first", [-1, -(2**31), 101, 2**31 - 1])
async def test_out_of_range_first_is_bad_user_input(alice, first):
    # A field error (the request was well-formed): 200, `data` null, as the spec says.
    response = await alice.post(LIST, {"first": first}, GRAPHQL_RESPONSE_JSON)
    assert response.status_code == 200
    assert response.json()["data"] is None
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "first" in error["message"]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


GARBAGE_CURSORS = {
    "word": "garbage",
    "empty": "",
    "symbols": "!!!@@@",
    "not json": _b64(b"hello"),
    "json object": _b64(b'{"a": 1}'),
    "json number": _b64(b"5"),
    "wrong arity": _b64(b'["2024-01-01T00:00:00+00:00"]'),
    "bad date": _b64(b'["yesterday", "x"]'),
    "naive date": _b64(b'["2024-01-01T00:00:00", "x"]'),
    "numeric id": _b64(b'["2024-01-01T00:00:00+00:00", 5]'),
    "NUL in id": _b64(json.dumps(["2024-01-01T00:00:00+00:00", "a\x00"]).encode()),
    "surrogate in id": _b64(json.dumps(["2024-01-01T00:00:00+00:00", "\ud800"]).encode()),
    "bad utf-8": _b64(b"\xff\xfe\xfd"),
    "huge": "A" * 10_000,
}


@pytest.mark.parametrize("cursor", GARBAGE_CURSORS.values(), ids=list(GARBAGE_CURSORS))
async def test_garbage_cursor_is_invalid_cursor(alice, cursor):
    await create_workflow(alice)
    response = await alice.post(LIST, {"after": cursor}, GRAPHQL_RESPONSE_JSON)
    assert response.status_code == 200, response.text
    assert response.json()["data"] is None
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "INVALID_CURSOR"
    assert len(error["message"]) < 200


# Graph validation: refused, with every problem named


# Lean selections: converting and rendering 2,000 nodes is what these tests are about, not
# rendering every field of them.
LEAN_CREATE = """
mutation($input: WorkflowInput!) {
  createWorkflow(input: $input) {
    __typename
    ... on Workflow { id version }
    ... on ValidationError { problems { code field message } }
  }
}
"""
LEAN_UPDATE = """
mutation($id: ID!, $input: WorkflowInput!, $v: Int!) {
  updateWorkflow(id: $id, input: $input, expectedVersion: $v) {
    __typename ... on ValidationError { problems { code } }
  }
}
"""


async def test_2000_nodes_are_accepted_and_2001_refused(alice, db_state):
    big = only(await alice.gql(LEAN_CREATE, {"input": workflow_input("big", **chain(2000))}))
    assert big["__typename"] == "Workflow"
    got = await alice.gql(
        "query($id: ID!) { workflow(id: $id) { nodes { id } edges { id } } }", {"id": big["id"]}
    )
    assert len(got["workflow"]["nodes"]) == 2000 and len(got["workflow"]["edges"]) == 1999
    before = await db_state()
    refused = only(await alice.gql(LEAN_CREATE, {"input": workflow_input("bigger", **chain(2001))}))
    (problem,) = refused["problems"]
    assert (problem["code"], problem["field"]) == ("TOO_MANY_NODES", "nodes")
    assert "2001" in problem["message"] and "2000" in problem["message"]
    update = only(
        await alice.gql(
            LEAN_UPDATE, {"id": big["id"], "input": workflow_input(**chain(2001)), "v": 1}
        )
    )
    assert update == {"__typename": "ValidationError", "problems": [{"code": "TOO_MANY_NODES"}]}
    assert await db_state() == before


async def test_duplicate_node_ids(alice, db_state):
    problems = await _refused(
        alice,
        db_state,
        workflow_input(nodes=[node("a", "A"), node("a", "B")], edges=[]),
        "DUPLICATE_NODE_ID",
    )
    assert problems[0]["nodeId"] == "a"


async def test_duplicate_node_names(alice, db_state):
    await _refused(
        alice,
        db_state,
        workflow_input(nodes=[node("a", "Same"), node("b", "Same")], edges=[]),
        "DUPLICATE_NODE_NAME",
    )


async def test_dangling_edge(alice, db_state):
    problems = await _refused(
        alice,
        db_state,
        workflow_input(nodes=[node("a", "A")], edges=[edge("a", "ghost"), edge("phantom", "a")]),
        "EDGE_TARGET_MISSING",
        "EDGE_SOURCE_MISSING",
    )
    fields = {p["code"]: p["field"] for p in problems}
    assert fields == {
        "EDGE_TARGET_MISSING": "edges[0].target",
        "EDGE_SOURCE_MISSING": "edges[1].source",
    }


async def test_self_loop(alice, db_state):
    problems = await _refused(
        alice, db_state, workflow_input(nodes=[node("a", "A")], edges=[edge("a", "a")]), "SELF_LOOP"
    )
    assert problems[0]["nodeId"] == "a"


async def test_longer_cycle_names_its_nodes(alice, db_state):
    nodes = [node("t", "Trigger", "manual_trigger"), node("a", "Alpha"), node("b", "Beta")]
    nodes.append(node("c", "Gamma"))
    edges = [edge("t", "a"), edge("a", "b"), edge("b", "c"), edge("c", "a")]
    problems = await _refused(alice, db_state, workflow_input(nodes=nodes, edges=edges), "CYCLE")
    (cycle,) = problems
    assert cycle["nodeId"] in {"a", "b", "c"}
    for name in ("Alpha", "Beta", "Gamma"):
        assert name in cycle["message"]
    assert "Trigger" not in cycle["message"]


async def test_unknown_node_type_and_version(alice, db_state):
    problems = await _refused(
        alice,
        db_state,
        workflow_input(nodes=[node("a", "A", "nope"), node("b", "B", typeVersion=99)], edges=[]),
        "UNKNOWN_NODE_TYPE",
        "UNKNOWN_TYPE_VERSION",
    )
    assert {p["nodeId"] for p in problems} == {"a", "b"}


async def test_every_problem_is_reported_at_once(alice, db_state):
    nodes = [node("a", "A"), node("a", "B"), {"id": "c", "name": "", "type": "nope"}]
    problems = await _refused(
        alice,
        db_state,
        workflow_input("", nodes=nodes, edges=[edge("a", "ghost")], settings={"bad": 1}),
        "EMPTY_NAME",
        "INVALID_SETTINGS",
        "DUPLICATE_NODE_ID",
        "UNKNOWN_NODE_TYPE",
        "EDGE_TARGET_MISSING",
    )
    assert len(problems) >= 6
    assert all(p["severity"] == "STRUCTURAL" for p in problems)


@pytest.mark.parametrize(
    "parameters",
    [{}, {"maxItems": 0}, {"maxItems": "many"}, {"maxItems": 3, "unknown": True}],
    ids=["missing", "too small", "wrong type", "unknown key"],
)
async def test_parameters_failing_their_schema_are_stored_as_issues(alice, parameters):
    nodes = [node("t", "T", "manual_trigger"), node("lim", "Limit", "limit", parameters=parameters)]
    created = only(
        await alice.gql(CREATE, {"input": workflow_input(nodes=nodes, edges=[edge("t", "lim")])})
    )
    assert created["__typename"] == "Workflow"
    issues = created["nodes"][1]["issues"]
    assert issues, parameters
    assert {i["severity"] for i in issues} == {"PARAMETER"}
    assert {i["nodeId"] for i in issues} == {"lim"}
    assert all(i["field"].startswith("parameters") for i in issues)
    stored = (await alice.gql(GET, {"id": created["id"]}))["workflow"]
    assert stored["nodes"][1]["issues"] == issues
    assert stored["nodes"][1]["parameters"] == parameters


# Names


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("", "EMPTY_NAME"),
        ("   \t ", "EMPTY_NAME"),
        ("x" * 256, "NAME_TOO_LONG"),
        ("x" * 10_000, "NAME_TOO_LONG"),
    ],
    ids=["empty", "blank", "256", "10000"],
)
async def test_bad_workflow_names(alice, db_state, name, code):
    problems = await _refused(alice, db_state, workflow_input(name), code)
    assert problems[0]["field"] == "name"


async def test_workflow_name_of_255_characters_is_fine(alice):
    created = await create_workflow(alice, "é" * 255)
    assert created["name"] == "é" * 255


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("", "EMPTY_NAME"),
        (" ", "EMPTY_NAME"),
        ("n" * 129, "NAME_TOO_LONG"),
        ("n" * 10_000, "NAME_TOO_LONG"),
    ],
    ids=["empty", "blank", "129", "10000"],
)
async def test_bad_node_names(alice, db_state, name, code):
    nodes = [{"id": "a", "name": name, "type": "noop"}]
    problems = await _refused(alice, db_state, workflow_input(nodes=nodes, edges=[]), code)
    assert problems[0]["nodeId"] == "a"
    assert problems[0]["field"] == "name"


UNICODE_NAMES = [
    "Ünïcødé wörkflow",
    "工作流程 ワークフロー 워크플로",
    "🚀 Launch 👩\u200d💻 flow 🇺🇦",
    "\u05e2\u05d1\u05e8\u05d9\u05ea \u0645\u0631\u062d\u0628\u0627",  # Hebrew, Arabic
    "e\u0301 combining",
    "\U0001d518\U0001d52b\U0001d526 astral",  # mathematical letters outside the BMP
]


@pytest.mark.parametrize("name", UNICODE_NAMES)
async def test_unicode_and_emoji_names_round_trip(alice, name):
    nodes = [node("t", name, "manual_trigger"), node("ü🚀", f"{name} 2")]
    created = await create_workflow(
        alice,
        name,
        description=name * 3,
        tags=[name[:20]],
        nodes=nodes,
        edges=[edge("t", "ü🚀")],
    )
    got = (await alice.gql(GET, {"id": created["id"]}))["workflow"]
    assert got["name"] == name
    assert got["description"] == name * 3
    assert got["tags"] == [name[:20]]
    assert [n["name"] for n in got["nodes"]] == [name, f"{name} 2"]
    assert got["nodes"][1]["id"] == "ü🚀"
    assert got["edges"][0]["target"] == "ü🚀"
    found = await alice.gql(LIST, {"filter": {"nameContains": name, "tag": name[:20]}})
    assert [e["node"]["id"] for e in found["workflows"]["edges"]] == [created["id"]]


NUL_INPUTS = {
    "workflow name": workflow_input("bad\x00name"),
    "description": workflow_input(description="a\x00b"),
    "tag": workflow_input(tags=["ok", "t\x00g"]),
    "node name": workflow_input(nodes=[node("a", "A\x00")], edges=[]),
    "node id": workflow_input(nodes=[node("a\x00", "A")], edges=[]),
    "parameter": workflow_input(
        nodes=[node("s", "S", "set", parameters={"fields": [{"name": "x", "value": "\x00"}]})],
        edges=[],
    ),
    "parameter key": workflow_input(
        nodes=[node("a", "A", parameters={"\x00": 1})],
        edges=[],
    ),
}


@pytest.mark.parametrize("where", NUL_INPUTS)
async def test_nul_characters_are_refused(alice, db_state, where):
    problems = await _refused(alice, db_state, NUL_INPUTS[where], "INVALID_CHARACTER")
    assert all(p["severity"] == "STRUCTURAL" for p in problems)


async def test_nul_in_names_on_update_and_duplicate(alice, db_state):
    created = await create_workflow(alice)
    before = await db_state()
    update = only(
        await alice.gql(UPDATE, {"id": created["id"], "input": workflow_input("x\x00"), "v": 1})
    )
    assert update["__typename"] == "ValidationError"
    assert await db_state() == before


@pytest.mark.parametrize("field", ["name", "description", "tag", "node name"])
async def test_lone_surrogates_are_refused(alice, db_state, field):
    # httpx would refuse to encode a lone surrogate; JSON escapes it, as browsers may.
    workflow = {
        "name": workflow_input(name="bad \ud800"),
        "description": workflow_input(description="bad \udfff"),
        "tag": workflow_input(tags=["\ud83d"]),
        "node name": workflow_input(nodes=[node("a", "A \ud800")], edges=[]),
    }[field]
    body = json.dumps({"query": CREATE, "variables": {"input": workflow}}).encode()
    before = await db_state()
    response = await _post_raw(alice, body)
    assert response.status_code == 200, response.text
    result = response.json()["data"]["createWorkflow"]
    assert result["__typename"] == "ValidationError"
    assert "INVALID_CHARACTER" in [p["code"] for p in result["problems"]]
    assert await db_state() == before


# Ids and filters that cannot exist in any database


UNSTORABLE = ["a\x00b", "\x00", "\ud800", "x" * 10_000]


@pytest.mark.parametrize("bad_id", UNSTORABLE, ids=["nul", "only nul", "surrogate", "long"])
async def test_unstorable_ids_are_simply_not_found(alice, db_state, bad_id):
    await create_workflow(alice)
    before = await db_state()
    reads = {
        "query": "query($id: ID!) { workflow(id: $id) { id } "
        "workflowVersion(id: $id, version: 1) { id } }",
        "variables": {"id": bad_id},
    }
    response = await _post_raw(alice, json.dumps(reads).encode())
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"workflow": None, "workflowVersion": None}}
    for operation in (DELETE, UPDATE):
        variables = {"id": bad_id, "input": workflow_input(), "v": 1}
        body = json.dumps({"query": operation, "variables": variables}).encode()
        response = await _post_raw(alice, body)
        assert response.status_code == 200, response.text
        (result,) = response.json()["data"].values()
        assert result["__typename"] == "NotFoundError"
    revoke = {
        "query": "mutation($id: ID!) { revokeApiToken(id: $id) { __typename } }",
        "variables": {"id": bad_id},
    }
    response = await _post_raw(alice, json.dumps(revoke).encode())
    assert response.json()["data"]["revokeApiToken"]["__typename"] == "NotFoundError"
    assert await db_state() == before


@pytest.mark.parametrize("text", ["a\x00b", "\ud800"], ids=["nul", "surrogate"])
async def test_unstorable_filters_match_nothing(alice, text):
    await create_workflow(alice, "ab", tags=["ab"])
    for where in ({"nameContains": text}, {"tag": text}):
        body = json.dumps({"query": LIST, "variables": {"filter": where}}).encode()
        response = await _post_raw(alice, body)
        assert response.status_code == 200, response.text
        listing = response.json()["data"]["workflows"]
        assert listing["edges"] == [] and listing["totalCount"] == 0


# Settings, parameters and node options


@pytest.mark.parametrize(
    "value",
    [
        {"unknownKey": 1},
        {"timezone": "Mars/Olympus_Mons"},
        {"timezone": ""},
        {"timezone": "../../etc/passwd"},
        {"timezone": 5},
        {"executionTimeoutSeconds": -1},
        {"executionTimeoutSeconds": 0},
        {"executionTimeoutSeconds": 10**9},
        {"maxConcurrentExecutions": 0},
        {"maxConcurrentExecutions": 1.5},
        [1, 2],
        "UTC",
        7,
    ],
)
async def test_bad_settings(alice, db_state, value):
    problems = await _refused(alice, db_state, workflow_input(settings=value), "INVALID_SETTINGS")
    assert all(p["field"].startswith("settings") for p in problems)


async def test_good_settings_are_kept(alice):
    settings = {
        "timezone": "America/New_York",
        "executionTimeoutSeconds": 30.5,
        "maxConcurrentExecutions": 3,
    }
    created = await create_workflow(alice, settings=settings)
    assert created["settings"] == settings


@pytest.mark.parametrize(
    "parameters", [[1, 2], "text", 5, True], ids=["list", "string", "number", "bool"]
)
async def test_parameters_that_are_not_an_object(alice, db_state, parameters):
    problems = await _refused(
        alice,
        db_state,
        workflow_input(nodes=[node("a", "A", parameters=parameters)], edges=[]),
        "INVALID_PARAMETERS",
    )
    assert problems[0]["nodeId"] == "a"
    assert problems[0]["field"] == "nodes[0].parameters"


@pytest.mark.parametrize("credentials", [[1], "id", {"kind": 5}, {"kind": {"id": "x"}}])
async def test_credentials_that_are_not_a_map_of_ids(alice, db_state, credentials):
    await _refused(
        alice,
        db_state,
        workflow_input(nodes=[node("a", "A", credentials=credentials)], edges=[]),
        "INVALID_CREDENTIALS",
    )


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"retry": {"maxAttempts": 0}}, "INVALID_RETRY"),
        ({"retry": {"maxAttempts": 11}}, "INVALID_RETRY"),
        ({"retry": {"backoffSeconds": -1}}, "INVALID_RETRY"),
        ({"timeoutSeconds": 0}, "INVALID_TIMEOUT"),
        ({"timeoutSeconds": -5}, "INVALID_TIMEOUT"),
        ({"timeoutSeconds": 10**9}, "INVALID_TIMEOUT"),
        ({"notes": "n" * 10_001}, "NOTES_TOO_LONG"),
    ],
)
async def test_bad_node_options(alice, db_state, fields, code):
    await _refused(
        alice, db_state, workflow_input(nodes=[node("a", "A", **fields)], edges=[]), code
    )


@pytest.mark.parametrize(
    ("tags", "code"),
    [
        ([f"t{i}" for i in range(51)], "TOO_MANY_TAGS"),
        (["t" * 65], "NAME_TOO_LONG"),
        ([""], "EMPTY_NAME"),
        (["  "], "EMPTY_NAME"),
    ],
    ids=["51 tags", "long tag", "empty tag", "blank tag"],
)
async def test_bad_tags(alice, db_state, tags, code):
    await _refused(alice, db_state, workflow_input(tags=tags), code)


async def test_duplicate_tags_are_merged(alice):
    created = await create_workflow(alice, tags=["a", " a ", "b", "a"])
    assert created["tags"] == ["a", "b"]


async def test_too_long_description(alice, db_state):
    await _refused(alice, db_state, workflow_input(description="d" * 10_001), "NAME_TOO_LONG")


async def test_stale_expected_version(alice, db_state):
    created = await create_workflow(alice)
    only(await alice.gql(UPDATE, {"id": created["id"], "input": workflow_input(), "v": 1}))
    before = await db_state()
    stale = only(await alice.gql(UPDATE, {"id": created["id"], "input": workflow_input(), "v": 1}))
    assert stale["__typename"] == "VersionConflictError"
    assert stale["currentVersion"] == 2
    assert await db_state() == before


# Input values JSON can carry but the payload store cannot hold


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("\ud800", "lone UTF-16 surrogate"),
        (2**64, "integer too large"),
        (-(2**63) - 1, "integer too large"),
        ({"deep": ["\udfff"]}, "lone UTF-16 surrogate"),
    ],
    ids=["surrogate", "big", "small", "nested surrogate"],
)
async def test_execute_input_the_store_cannot_hold_is_refused(alice, db_state, value, reason):
    from tests.api.test_executions import EXECUTE

    created = await create_workflow(alice)
    body = json.dumps(
        {"query": EXECUTE, "variables": {"id": created["id"], "input": {"value": value}}}
    ).encode()
    before = await db_state()
    response = await _post_raw(alice, body)
    assert response.status_code == 200, response.text
    result = response.json()["data"]["executeWorkflow"]
    assert result["__typename"] == "ValidationError", result
    (problem,) = result["problems"]
    assert (problem["code"], problem["field"]) == ("INVALID_INPUT", "input")
    assert reason in problem["message"]
    assert await db_state() == before
