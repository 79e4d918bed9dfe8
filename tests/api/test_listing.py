"""The workflow listing: a Relay connection, newest first, with filters and a total."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from storage.models import Workflow, WorkflowTag
from tests.factories import LIST, SET_ACTIVE, create_workflow, only, publish_workflow


async def _list(caller, **variables):
    return (await caller.gql(LIST, variables))["workflows"]


def _names(connection):
    return [edge["node"]["name"] for edge in connection["edges"]]


async def _all_pages(caller, first, **variables):
    """Walk every page; returns the pages."""
    pages = []
    after = None
    while True:
        page = await _list(caller, first=first, after=after, **variables)
        pages.append(page)
        if not page["pageInfo"]["hasNextPage"]:
            return pages
        after = page["pageInfo"]["endCursor"]
        assert len(pages) < 100, "pagination does not end"


async def _workspace_id(caller):
    data = await caller.gql("{ viewer { personalWorkspace { id } } }")
    return data["viewer"]["personalWorkspace"]["id"]


async def _bulk_insert(database, caller, names, created_at=None, tags=()):
    """Workflows stored directly, optionally all with the same creation time."""
    workspace_id = await _workspace_id(caller)
    now = created_at or datetime.now(UTC)
    rows = [
        Workflow(
            workspace_id=workspace_id,
            name=name,
            created_by=caller.user_id,
            created_at=now if created_at else now + timedelta(seconds=index),
            updated_at=now,
            tags=list(tags),
        ).model_dump()
        for index, name in enumerate(names)
    ]
    async with database.transaction() as session:
        await session.exec(insert(Workflow), params=rows)
        if tags:
            await session.exec(
                insert(WorkflowTag),
                params=[{"workflow_id": r["id"], "tag": t} for r in rows for t in tags],
            )
    return rows


async def test_newest_first(alice):
    created = [await create_workflow(alice, f"wf {i}") for i in range(4)]
    listing = await _list(alice)
    assert [e["node"]["id"] for e in listing["edges"]] == [w["id"] for w in reversed(created)]
    stamps = [e["node"]["createdAt"] for e in listing["edges"]]
    assert stamps == sorted(stamps, reverse=True)
    assert listing["totalCount"] == 4
    assert listing["pageInfo"]["hasNextPage"] is False
    assert listing["pageInfo"]["hasPreviousPage"] is False
    assert listing["pageInfo"]["startCursor"] == listing["edges"][0]["cursor"]
    assert listing["pageInfo"]["endCursor"] == listing["edges"][-1]["cursor"]


async def test_empty_listing(alice):
    listing = await _list(alice)
    assert listing == {
        "totalCount": 0,
        "edges": [],
        "pageInfo": {
            "hasNextPage": False,
            "hasPreviousPage": False,
            "startCursor": None,
            "endCursor": None,
        },
    }


async def test_pages_cover_everything_once(alice, database):
    names = [f"wf {i:02}" for i in range(11)]
    await _bulk_insert(database, alice, names)
    pages = await _all_pages(alice, first=4)
    assert [len(p["edges"]) for p in pages] == [4, 4, 3]
    assert [p["pageInfo"]["hasPreviousPage"] for p in pages] == [False, True, True]
    assert [p["pageInfo"]["hasNextPage"] for p in pages] == [True, True, False]
    seen = [name for page in pages for name in _names(page)]
    assert seen == list(reversed(names))
    assert all(p["totalCount"] == 11 for p in pages)


async def test_pages_are_stable_when_creation_times_tie(alice, database):
    same_instant = datetime(2030, 1, 1, tzinfo=UTC)
    rows = await _bulk_insert(database, alice, [f"tie {i}" for i in range(9)], same_instant)
    pages = await _all_pages(alice, first=2)
    seen = [e["node"]["id"] for page in pages for e in page["edges"]]
    assert len(seen) == len(set(seen)) == 9
    assert seen == sorted((r["id"] for r in rows), reverse=True)


@pytest.mark.parametrize("size", [1, 5, 20])
async def test_page_sizes(alice, database, size):
    await _bulk_insert(database, alice, [f"w{i}" for i in range(12)])
    pages = await _all_pages(alice, first=size)
    seen = [name for page in pages for name in _names(page)]
    assert len(seen) == len(set(seen)) == 12


async def test_default_page_size_is_twenty(alice, database):
    await _bulk_insert(database, alice, [f"w{i}" for i in range(25)])
    listing = await _list(alice)
    assert len(listing["edges"]) == 20
    assert listing["pageInfo"]["hasNextPage"] is True
    assert listing["totalCount"] == 25


async def test_first_zero_returns_no_edges(alice):
    await create_workflow(alice)
    listing = await _list(alice, first=0)
    assert listing["edges"] == []
    assert listing["totalCount"] == 1
    assert listing["pageInfo"]["hasNextPage"] is True


async def test_last_page_cursor_gives_an_empty_page(alice):
    await create_workflow(alice)
    first = await _list(alice, first=1)
    after = await _list(alice, first=1, after=first["pageInfo"]["endCursor"])
    assert after["edges"] == []
    assert after["pageInfo"]["hasNextPage"] is False
    assert after["pageInfo"]["hasPreviousPage"] is True


async def test_cursor_survives_deletion_of_its_row(alice):
    created = [await create_workflow(alice, f"wf {i}") for i in range(3)]
    page = await _list(alice, first=1)
    assert _names(page) == ["wf 2"]
    await alice.gql(
        "mutation($id: ID!) { deleteWorkflow(id: $id) { __typename } }", {"id": created[2]["id"]}
    )
    rest = await _list(alice, first=5, after=page["pageInfo"]["endCursor"])
    assert _names(rest) == ["wf 1", "wf 0"]


async def test_name_filter_is_a_case_insensitive_substring(alice):
    for name in ("Alpha report", "ALPHABET", "beta", "the alphabet soup"):
        await create_workflow(alice, name)
    listing = await _list(alice, filter={"nameContains": "aLPh"})
    assert sorted(_names(listing)) == ["ALPHABET", "Alpha report", "the alphabet soup"]
    assert listing["totalCount"] == 3
    assert _names(await _list(alice, filter={"nameContains": "zzz"})) == []
    assert (await _list(alice, filter={"nameContains": ""}))["totalCount"] == 4


@pytest.mark.parametrize(
    ("needle", "expected"),
    [
        ("%", ["100% done"]),
        ("_", ["a_b"]),
        ("0%", ["100% done"]),
        ("a_", ["a_b"]),
        ("\\", ["back\\slash"]),
        ("%_", []),
        ("'", ["it's"]),
    ],
)
async def test_name_filter_takes_wildcards_literally(alice, needle, expected):
    for name in ("100% done", "100 done", "a_b", "axb", "back\\slash", "it's", "plain"):
        await create_workflow(alice, name)
    listing = await _list(alice, filter={"nameContains": needle})
    assert sorted(_names(listing)) == expected
    assert listing["totalCount"] == len(expected)


async def test_unicode_name_filter(alice):
    await create_workflow(alice, "Café 🚀 launch")
    await create_workflow(alice, "Cafe")
    await create_workflow(alice, "ÜBER ÇA")
    assert _names(await _list(alice, filter={"nameContains": "é 🚀"})) == ["Café 🚀 launch"]
    assert _names(await _list(alice, filter={"nameContains": "CAFÉ"})) == ["Café 🚀 launch"]
    assert _names(await _list(alice, filter={"nameContains": "über ça"})) == ["ÜBER ÇA"]


async def test_tag_filter(alice):
    await create_workflow(alice, "one", tags=["etl", "daily"])
    await create_workflow(alice, "two", tags=["etl"])
    await create_workflow(alice, "three", tags=[])
    assert _names(await _list(alice, filter={"tag": "etl"})) == ["two", "one"]
    assert _names(await _list(alice, filter={"tag": "daily"})) == ["one"]
    assert _names(await _list(alice, filter={"tag": "ETL"})) == []
    assert (await _list(alice, filter={"tag": "etl"}))["totalCount"] == 2


async def test_active_filter(alice):
    on = await create_workflow(alice, "on")
    await create_workflow(alice, "off")
    await publish_workflow(alice, on)
    result = only(await alice.gql(SET_ACTIVE, {"id": on["id"], "active": True}))
    assert result["active"] is True
    assert _names(await _list(alice, filter={"active": True})) == ["on"]
    assert _names(await _list(alice, filter={"active": False})) == ["off"]
    assert len((await _list(alice, filter={"active": None}))["edges"]) == 2


async def test_filters_combine_and_paginate(alice, database):
    await _bulk_insert(database, alice, [f"report {i}" for i in range(7)], tags=["r"])
    await _bulk_insert(database, alice, [f"report x{i}" for i in range(3)])
    await _bulk_insert(database, alice, [f"other {i}" for i in range(3)], tags=["r"])
    where = {"nameContains": "REPORT", "tag": "r", "active": False}
    pages = await _all_pages(alice, first=3, filter=where)
    seen = [name for page in pages for name in _names(page)]
    assert seen == [f"report {i}" for i in reversed(range(7))]
    assert {p["totalCount"] for p in pages} == {7}


async def test_listing_without_total_count(alice):
    await create_workflow(alice)
    data = await alice.gql("{ workflows { edges { node { id } } } }")
    assert len(data["workflows"]["edges"]) == 1
