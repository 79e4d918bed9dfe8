"""The node type registry, filled from `loom.node_types` entry points like a plugin's."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import engine.node_types
from engine.node_types import (
    ENTRY_POINT_GROUP,
    NodeGroup,
    NodeType,
    NodeTypeRegistry,
    NodeTypeRegistryError,
    load_registry,
)
from engine.nodes.builtin import node_types

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = EntryPoint(
    name="builtin", value="engine.nodes.builtin:node_types", group=ENTRY_POINT_GROUP
)


def make_type(name: str = "acme.thing", version: int = 1, **fields: object) -> NodeType:
    values: dict[str, object] = {
        "display_name": "Thing",
        "description": "Does a thing.",
        "group": NodeGroup.ACTION,
    }
    values.update(fields)
    return NodeType(name=name, version=version, **values)  # type: ignore[arg-type]


@dataclass
class FakeEntryPoint:
    """Stands in for an installed plugin's entry point."""

    name: str
    value: str
    loader: Callable[[], object]

    def load(self) -> object:
        return self.loader()


def use_entry_points(monkeypatch: pytest.MonkeyPatch, *found: object) -> None:
    def fake_entry_points(*, group: str) -> Iterator[object]:
        assert group == ENTRY_POINT_GROUP
        return iter(found)

    monkeypatch.setattr(engine.node_types, "entry_points", fake_entry_points)


def test_load_registry_finds_builtins_and_the_installed_plugin() -> None:
    # Loom is installed and tests/plugin_pkg (its dist-info) is on the tests' path, so
    # discovery goes through importlib.metadata for real.
    registry = load_registry()
    names = {node_type.name for node_type in registry.latest()}
    assert {node_type.name for node_type in node_types()} <= names
    greet = registry.get("acme.greet")
    assert greet is not None
    assert greet.group is NodeGroup.ACTION
    assert greet.parameters_schema["required"] == ["greeting"]


# Node type names as a process of this environment sees them, without the tests' path.
LIST_TYPES = (
    "from engine.node_types import load_registry as r; print(*(t.name for t in r().latest()))"
)


def test_the_test_plugin_is_not_installed_in_the_environment() -> None:
    """A server started from this virtual environment (`make run`) offers no test node type."""
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    listed = subprocess.run(
        [sys.executable, "-c", LIST_TYPES], env=environment, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    names = set(listed.stdout.split())
    assert "set" in names and "acme.greet" not in names


def test_registry_lists_types_sorted() -> None:
    registry = NodeTypeRegistry([make_type("zeta"), make_type("alpha", 2), make_type("alpha", 1)])
    assert [(t.name, t.version) for t in registry.latest()] == [("alpha", 2), ("zeta", 1)]
    assert [(t.name, t.version) for t in registry.all()] == [
        ("alpha", 1),
        ("alpha", 2),
        ("zeta", 1),
    ]


def test_get_returns_the_latest_version_unless_asked() -> None:
    first, second = make_type(version=1), make_type(version=2, display_name="Thing 2")
    registry = NodeTypeRegistry([second, first])
    assert registry.get("acme.thing") is second
    assert registry.get("acme.thing", 1) is first
    assert registry.get("acme.thing", 3) is None
    assert registry.get("acme.other") is None
    assert registry.has_name("acme.thing") and not registry.has_name("acme.other")


def test_registering_a_name_and_version_twice_is_refused() -> None:
    registry = NodeTypeRegistry([make_type()])
    with pytest.raises(NodeTypeRegistryError, match="registered twice"):
        registry.register(make_type(display_name="Another thing"))
    with pytest.raises(NodeTypeRegistryError):
        NodeTypeRegistry([*node_types(), *node_types()])


@pytest.mark.parametrize(
    "name", ["", "Set", "1set", "http-request", "acme.", ".greet", "a.b.c", "acme greet", "ñ"]
)
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(NodeTypeRegistryError, match="invalid node type name"):
        NodeTypeRegistry([make_type(name)])


@pytest.mark.parametrize("name", ["set", "http_request", "acme.greet", "a1.b_2"])
def test_good_names_are_accepted(name: str) -> None:
    assert NodeTypeRegistry([make_type(name)]).get(name) is not None


def test_an_invalid_parameters_schema_is_refused() -> None:
    with pytest.raises(NodeTypeRegistryError, match="invalid parameters schema"):
        NodeTypeRegistry([make_type(parameters_schema={"type": "objekt"})])


def test_a_broken_plugin_is_logged_and_skipped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def explode() -> object:
        raise RuntimeError("plugin bug")

    def returns_junk() -> object:
        return lambda: ["not a node type"]

    def bad_schema() -> object:
        return make_type("acme.broken", parameters_schema={"type": 5})

    use_entry_points(
        monkeypatch,
        FakeEntryPoint("exploding", "acme_exploding:node_types", explode),
        FakeEntryPoint("junk", "acme_junk:node_types", returns_junk),
        FakeEntryPoint("schema", "acme_schema:node_types", bad_schema),
        EntryPoint(name="missing", value="no_such_module_xyz:node_types", group=ENTRY_POINT_GROUP),
        BUILTIN,
    )
    with caplog.at_level(logging.ERROR, logger="engine.node_types"):
        registry = load_registry()
    assert {t.name for t in registry.latest()} == {t.name for t in node_types()}
    failed = [r.getMessage() for r in caplog.records if r.name == "engine.node_types"]
    assert len(failed) == 4
    for source in ("exploding", "junk", "schema", "missing"):
        assert any(source in message and "skipped" in message for message in failed), source


def test_a_plugin_may_export_a_single_node_type(monkeypatch: pytest.MonkeyPatch) -> None:
    single = make_type("acme.single")
    use_entry_points(monkeypatch, FakeEntryPoint("single", "acme:single", lambda: single))
    assert load_registry().get("acme.single") is single


def test_two_plugins_with_the_same_type_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    impostor = FakeEntryPoint("impostor", "impostor_pkg:node_types", lambda: node_types)
    use_entry_points(monkeypatch, BUILTIN, impostor)
    with pytest.raises(NodeTypeRegistryError, match="registered twice"):
        load_registry()


def test_one_entry_point_listed_twice_by_stale_metadata_loads_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_entry_points(monkeypatch, BUILTIN, BUILTIN)
    assert load_registry().get("manual_trigger") is not None


def test_packages_say_what_each_entry_point_gave_or_why_it_gave_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode() -> object:
        raise RuntimeError("plugin bug")

    def bad_catalog() -> object:
        from engine.node_catalog import Catalog, ParameterHint

        return make_type("acme.hinted", catalog=Catalog(hints=(ParameterHint("nope"),)))

    use_entry_points(
        monkeypatch,
        FakeEntryPoint("exploding", "acme_exploding:node_types", explode),
        FakeEntryPoint("hinted", "acme_hinted:node_types", bad_catalog),
        FakeEntryPoint("single", "acme:single", lambda: make_type("acme.single", version=2)),
        BUILTIN,
    )
    registry = load_registry()  # an invalid type does not stop the start
    packages = {package.entry_point.split(" = ")[0]: package for package in registry.packages}
    assert packages["exploding"].error == "RuntimeError: plugin bug"
    assert packages["exploding"].node_types == ()
    hinted = packages["hinted"].error
    assert hinted is not None and "names a parameter the schema does not have" in hinted
    assert registry.get("acme.hinted") is None
    assert packages["single"].node_types == (("acme.single", 2),) and not packages["single"].error
    assert len(packages["builtin"].node_types) == len(node_types())
    assert packages["builtin"].distribution is None  # a bare EntryPoint carries no metadata


def test_the_installed_packages_are_named_by_their_distribution() -> None:
    packages = {
        package.entry_point.split(" = ")[0]: package for package in load_registry().packages
    }
    assert packages["builtin"].distribution == "loom-server"
    assert packages["acme"].distribution == "loom-test-plugin"
    assert packages["acme"].node_types == (("acme.greet", 1),)
