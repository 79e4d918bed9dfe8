"""Catalog queries answered from the last identical one while the registry is unchanged."""

from __future__ import annotations

import pytest

from engine.node_types import NodeGroup, NodeType, NodeTypeRegistry, load_registry
from resolvers.node_types import _results

NAMES = "query Names($search: String) { nodeTypes(search: $search) { name } }"


@pytest.fixture
def registry() -> NodeTypeRegistry:
    """A registry of this test's own, which it may add types to."""
    return load_registry()


@pytest.fixture(autouse=True)
def no_results_kept() -> None:
    _results.clear()


def _later(name: str) -> NodeType:
    return NodeType(
        name=name, version=1, display_name="Later", description="Later.", group=NodeGroup.ACTION
    )


async def test_a_repeated_catalog_query_is_answered_without_executing_it(alice, registry):
    first = await alice.gql(NAMES, {"search": "merge"})
    assert [t["name"] for t in first["nodeTypes"]] == ["merge"]
    assert len(_results) == 1
    (key,) = _results
    kept = _results[key]
    assert await alice.gql(NAMES, {"search": "merge"}) == first
    assert _results[key] is kept  # the same result, not executed again
    # Other variables are another query.
    await alice.gql(NAMES, {"search": "split"})
    assert len(_results) == 2


async def test_a_change_of_the_registry_is_seen_at_once(alice, registry):
    await alice.gql(NAMES, {"search": "acme"})
    registry.register(_later("acme.later"))
    names = [t["name"] for t in (await alice.gql(NAMES, {"search": "acme"}))["nodeTypes"]]
    assert names == ["acme.greet", "acme.later"]


async def test_only_catalog_queries_of_an_authenticated_caller_are_kept(alice, http):
    mixed = "{ nodeTypes { name } viewer { name } }"
    assert (await alice.gql(mixed))["viewer"]["name"] == "alice"
    assert not _results
    await alice.gql(NAMES)
    anonymous = await http.post("/graphql", json={"query": NAMES})
    body = anonymous.json()
    assert body.get("data") is None or body["data"].get("nodeTypes") is None
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_kept_results_are_bounded(alice):
    for number in range(80):
        await alice.gql(NAMES, {"search": f"word{number}"})
    assert len(_results) == 32


async def test_large_or_aliased_operations_are_not_kept(alice):
    aliased = "{ " + " ".join(f"a{n}: nodeTypes {{ name }}" for n in range(4)) + " }"
    await alice.gql(aliased)
    await alice.gql(NAMES, {"search": "x", "unused": "u" * 2000})
    assert not _results


async def test_a_long_search_is_refused(alice):
    body = (await alice.post(NAMES, {"search": "e " * 101})).json()
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "search"}
    assert error["message"] == "search is 202 characters long; at most 200 are looked for"
