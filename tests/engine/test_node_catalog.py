"""The catalog of a node type: what the editor shows, checked against the type's parameters."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from engine.node_catalog import CORE, Catalog, ParameterHint, Widget, parameter_schema
from engine.node_types import NodeGroup, NodeType, NodeTypeRegistry, NodeTypeRegistryError
from engine.nodes.builtin import node_types

DOCS = Path(__file__).resolve().parents[2] / "docs"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
        "url": {"type": "string"},
        "rows": {
            "type": "array",
            "items": {"type": "object", "properties": {"value": {"type": "string"}}},
        },
    },
}


def _type(catalog: Catalog) -> NodeType:
    return NodeType(
        name="acme.thing",
        version=1,
        display_name="Thing",
        description="A thing.",
        group=NodeGroup.ACTION,
        parameters_schema=SCHEMA,
        catalog=catalog,
    )


BAD_CATALOGS = {
    "a hint for an unknown parameter": (
        Catalog(hints=(ParameterHint("nope"),)),
        "the hint for 'nope' names a parameter the schema does not have",
    ),
    "a hint inside a list that has no such field": (
        Catalog(hints=(ParameterHint("rows[].nope"),)),
        "the hint for 'rows[].nope' names a parameter",
    ),
    "a hint given twice": (
        Catalog(hints=(ParameterHint("url"), ParameterHint("url"))),
        "the hint for 'url' is given twice",
    ),
    "shown depending on an unknown parameter": (
        Catalog(hints=(ParameterHint("url", show_when={"kind": ("x",)}),)),
        "depending on 'kind', which is not a parameter",
    ),
    "shown for a value the parameter cannot take": (
        Catalog(hints=(ParameterHint("url", show_when={"mode": ("c",)}),)),
        "depends on 'mode' being 'c', which it cannot be",
    ),
    "shown for no value": (
        Catalog(hints=(ParameterHint("url", show_when={"mode": ()}),)),
        "lists no value of 'mode'",
    ),
    "shown depending on itself": (
        Catalog(hints=(ParameterHint("mode", show_when={"mode": ("a",)}),)),
        "depending on itself",
    ),
    "an icon that is neither a name nor an image": (
        Catalog(icon="javascript:alert(1)"),
        "is neither an icon name nor a data:image URI",
    ),
    "a documentation link that is not a URL": (
        Catalog(documentation_url="ftp://example.com/docs"),
        "is neither an http(s) URL nor a docs/ page",
    ),
    "a subtitle naming an unknown parameter": (
        Catalog(subtitle="{method} {url}"),
        "the subtitle names 'method', which is not a parameter",
    ),
    "defaults for an unknown parameter": (
        Catalog(defaults={"nope": 1}),
        "the default parameters name 'nope'",
    ),
    "an empty category": (Catalog(category=" "), "the category is empty"),
}


@pytest.mark.parametrize("case", BAD_CATALOGS)
def test_a_catalog_that_does_not_fit_the_parameters_is_refused(case: str) -> None:
    catalog, message = BAD_CATALOGS[case]
    with pytest.raises(NodeTypeRegistryError) as caught:
        NodeTypeRegistry([_type(catalog)])
    assert "node type 'acme.thing' version 1 has a catalog" in str(caught.value)
    assert message in str(caught.value)


def test_a_catalog_that_fits_is_registered_with_its_defaults() -> None:
    catalog = Catalog(
        category="Sales",
        icon="data:image/svg+xml;base64,PHN2Zy8+",
        documentation_url="https://example.com/docs/thing",
        subtitle="{mode} {url}",
        hints=(
            ParameterHint("mode"),
            ParameterHint("url", placeholder="https://", show_when={"mode": ("b",)}),
            ParameterHint("rows[].value", widget=Widget.MULTILINE),
        ),
        defaults={"rows": [{"value": ""}]},
    )
    registry = NodeTypeRegistry([_type(catalog)])
    registered = registry.get("acme.thing")
    assert registered is not None
    assert registered.default_parameters() == {"mode": "a", "rows": [{"value": ""}]}


def test_parameter_paths_reach_into_lists() -> None:
    assert parameter_schema(SCHEMA, "rows[].value") == {"type": "string"}
    assert parameter_schema(SCHEMA, "rows.value") is None  # a list is entered with []
    assert parameter_schema(SCHEMA, "url[]") is None


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


@pytest.mark.parametrize("node_type", node_types(), ids=lambda node_type: node_type.name)
def test_every_builtin_is_described_for_the_palette(node_type: NodeType) -> None:
    catalog = node_type.catalog
    assert catalog.category == CORE
    assert catalog.subcategory in {"Triggers", "Flow", "Data transformation", "Helpers"}
    assert catalog.icon.startswith("fa:")
    # Its documentation is a page of Loom's docs that exists, at a heading that exists.
    page, _, anchor = catalog.documentation_url.partition("#")
    path = DOCS.parent / page
    assert path.is_file(), catalog.documentation_url
    assert not anchor or anchor in _anchors(path.read_text(encoding="utf-8")), anchor
    # Triggers start the palette's Triggers section; nothing else is there.
    assert (catalog.subcategory == "Triggers") == node_type.is_trigger


def test_the_builtins_catalogs_fit_their_parameters() -> None:
    # Registering checks every catalog (hints, conditions, subtitles, defaults).
    NodeTypeRegistry(node_types())


def test_hints_into_a_composed_schema_are_trusted() -> None:
    composed = {
        "type": "object",
        "$defs": {"mode": {"type": "string", "enum": ["a", "b"]}},
        "properties": {"mode": {"$ref": "#/$defs/mode"}},
        "allOf": [{"properties": {"extra": {"type": "string"}}}],
    }
    node_type = NodeType(
        name="acme.composed",
        version=1,
        display_name="Composed",
        description="Composed.",
        group=NodeGroup.ACTION,
        parameters_schema=composed,
        catalog=Catalog(hints=(ParameterHint("extra", show_when={"mode": ("a",)}),)),
    )
    assert NodeTypeRegistry([node_type]).get("acme.composed") is node_type


def test_a_condition_on_true_is_not_a_condition_on_1() -> None:
    schema = {"type": "object", "properties": {"n": {"enum": [1, 2]}, "s": {"type": "string"}}}
    catalog = Catalog(hints=(ParameterHint("s", show_when={"n": (True,)}),))
    with pytest.raises(NodeTypeRegistryError, match="depends on 'n' being True"):
        NodeTypeRegistry(
            [dataclasses.replace(_type(Catalog()), parameters_schema=schema, catalog=catalog)]
        )
