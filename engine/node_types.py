"""Node type descriptors and the registry that collects them from entry points.

Every node type, built-in or third-party, is registered the same way: a Python entry point in
the group `loom.node_types` that loads either a `NodeType` or a callable returning an iterable
of them. Loom's own types are declared in its `pyproject.toml` exactly like a plugin's.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from importlib.metadata import entry_points
from typing import Any, Protocol

from engine.errors import EngineError, WorkflowError
from engine.graph import DEFAULT_PORT
from engine.node_catalog import Catalog, catalog_problems, default_parameters

ENTRY_POINT_GROUP = "loom.node_types"

# Built-in names are bare (`http_request`); plugin names are `namespace.name`.
NODE_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$")

logger = logging.getLogger(__name__)


class NodeGroup(StrEnum):
    """Where the editor shows a node type in its palette."""

    TRIGGER = "trigger"
    ACTION = "action"
    TRANSFORM = "transform"
    FLOW = "flow"


@dataclass(frozen=True, slots=True)
class Port:
    """A named input or output of a node type."""

    name: str = DEFAULT_PORT
    display_name: str = ""
    # Whether several edges may end in this input port (their items are concatenated in
    # edge order). Meaningless on output ports, which may always fan out.
    accepts_many: bool = True


@dataclass(frozen=True, slots=True)
class NodeType:
    """What the editor and the validator know about one version of a node type."""

    name: str
    version: int
    display_name: str
    description: str
    group: NodeGroup
    inputs: tuple[Port, ...] = (Port(),)
    outputs: tuple[Port, ...] = (Port(),)
    parameters_schema: dict[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    credential_kinds: tuple[str, ...] = ()
    # The behaviour (`engine.nodes.base.Behaviour`); None for a type that only describes.
    # A node runs when at least one incoming edge carries data; ports whose edges carry none
    # are absent from its inputs, and merge-type behaviours decide what that means.
    execute: Any = field(default=None, compare=False, repr=False)
    # Checks the schema cannot express (a cron expression that parses, a timezone that
    # exists): parameters -> (code, parameter path, message) for every problem. Shown as
    # node issues on save, like schema problems. A check that takes time (compiling
    # patterns) may be a generator that yields None between its steps: validation gives the
    # event loop a turn there when a slice has passed.
    check_parameters: Any = field(default=None, compare=False, repr=False)
    # Parameters that hold source code (the Code node's script): taken literally, never as
    # `{{ }}` templates; the nodes they name as `$("X")` must be upstream, as in expressions.
    code_parameters: tuple[str, ...] = ()
    # Why this version should no longer be used, and what to use instead (None: it is
    # current). Its nodes still run; they get a NODE_TYPE_DEPRECATED hint.
    deprecated: str | None = None
    # How the parameters of the previous version become this version's (`upgradeNode`):
    # parameters -> parameters, raising `ParameterMigrationError` with what it cannot carry
    # over. None: a node cannot be upgraded to this version.
    migrate: Callable[[dict[str, Any]], dict[str, Any]] | None = field(
        default=None, compare=False, repr=False
    )
    # How the editor presents it: palette place, icon, form hints, new-node parameters.
    catalog: Catalog = field(default_factory=Catalog, compare=False)

    def template_parameters(self, parameters: Any) -> Any:
        """The parameters that may hold `{{ }}` expressions: all but the code parameters."""
        if not self.code_parameters or not isinstance(parameters, dict):
            return parameters
        return {
            name: value for name, value in parameters.items() if name not in self.code_parameters
        }

    def default_parameters(self) -> dict[str, Any]:
        """A new node's parameters (the schema's top-level defaults, then the catalog's)."""
        return default_parameters(self.parameters_schema, self.catalog)

    @property
    def is_trigger(self) -> bool:
        return self.group is NodeGroup.TRIGGER

    def input(self, name: str) -> Port | None:
        return next((port for port in self.inputs if port.name == name), None)

    def output(self, name: str) -> Port | None:
        return next((port for port in self.outputs if port.name == name), None)


@dataclass(frozen=True, slots=True)
class NodeTypePackage:
    """One `loom.node_types` entry point as it was loaded: the distribution that declares
    it, the types it gave, or why it gave none."""

    entry_point: str  # `name = module:attribute`
    distribution: str | None  # None when the metadata does not say (a path entry)
    version: str | None
    node_types: tuple[tuple[str, int], ...] = ()  # (name, version) of each type it gave
    error: str | None = None  # why it was skipped


class ParameterMigrationError(WorkflowError):
    """Parameters a type's `migrate` cannot carry over to its version: each problem is
    (parameter path, message)."""

    def __init__(self, problems: list[tuple[str, str]], node_id: str | None = None) -> None:
        super().__init__("; ".join(f"{path}: {message}" for path, message in problems))
        self.problems = problems
        self.node_id = node_id  # the node being upgraded, once known


class NodeTypeRegistryError(EngineError):
    """A node type could not be registered (bad name, invalid schema, duplicate version)."""


_REVISIONS = itertools.count(1)


class NodeTypeRegistry:
    """All known node types, by name and version."""

    def __init__(self, node_types: Iterable[NodeType] = ()) -> None:
        self._by_name: dict[str, dict[int, NodeType]] = {}
        # Moves on every change, and is never the same for two registries of the process:
        # what is built from a registry (the API's catalog) is built again only when it moves.
        self.revision = next(_REVISIONS)
        # The entry points it was loaded from (`load_registry`), in load order.
        self.packages: tuple[NodeTypePackage, ...] = ()
        for node_type in node_types:
            self.register(node_type)

    def register(self, node_type: NodeType, *, schema_checked: bool = False) -> None:
        """Add one version of a type; a bad name, a bad schema or catalog, or a duplicate is
        refused. `schema_checked`: the caller has checked the parameters schema already, or
        trusts it."""
        check_node_type(node_type, schema=not schema_checked)
        versions = self._by_name.setdefault(node_type.name, {})
        if node_type.version in versions:
            raise NodeTypeRegistryError(
                f"node type {node_type.name!r} version {node_type.version} registered twice"
            )
        versions[node_type.version] = node_type
        self.revision = next(_REVISIONS)

    def get(self, name: str, version: int | None = None) -> NodeType | None:
        """The given version of a type, or its latest version when `version` is None."""
        versions = self._by_name.get(name)
        if not versions:
            return None
        if version is None:
            return versions[max(versions)]
        return versions.get(version)

    def latest_version(self, name: str) -> int | None:
        """The newest version of a type, None when there is no such type."""
        versions = self._by_name.get(name)
        return max(versions) if versions else None

    def has_name(self, name: str) -> bool:
        return name in self._by_name

    def latest(self) -> list[NodeType]:
        """The latest version of every type, sorted by name."""
        return [versions[max(versions)] for _, versions in sorted(self._by_name.items())]

    def versions(self, name: str) -> list[int]:
        """Every installed version of a type, ascending."""
        return sorted(self._by_name.get(name, {}))

    def all(self) -> list[NodeType]:
        """Every version of every type, sorted by name then version."""
        return [
            versions[version]
            for _, versions in sorted(self._by_name.items())
            for version in sorted(versions)
        ]


class NodeTypeLookup(Protocol):
    """What validating, pinning, upgrading and planning read of the node types: the
    registry, or a workspace's view of it (`WorkspaceNodeTypes`)."""

    @property
    def revision(self) -> Hashable:
        """Changes whenever what the other methods answer changes."""
        ...

    def get(self, name: str, version: int | None = None) -> NodeType | None: ...

    def latest_version(self, name: str) -> int | None: ...

    def has_name(self, name: str) -> bool: ...

    def latest(self) -> list[NodeType]: ...

    def versions(self, name: str) -> list[int]: ...

    def all(self) -> list[NodeType]: ...


class WorkspaceNodeTypes:
    """The node types one workspace sees: the process's registry, plus the workspace's own
    declarative types (`ws.name`, engine/declarative.py). Read-only, made per use; the
    declarative names never shadow the registry's (their creation refuses a taken name)."""

    __slots__ = ("_declared", "_registry", "stamp")

    def __init__(
        self,
        registry: NodeTypeRegistry,
        declared: Mapping[str, Mapping[int, NodeType]],
        stamp: Hashable = (),
    ) -> None:
        self._registry = registry
        self._declared = declared
        # What the declared types were made from (their stored versions' ids): with the
        # registry's revision, the key of anything built from this view.
        self.stamp = stamp

    @property
    def revision(self) -> Hashable:
        return (self._registry.revision, self.stamp)

    @property
    def registry(self) -> NodeTypeRegistry:
        """The process's registry this view adds to."""
        return self._registry

    def declared_latest(self) -> list[NodeType]:
        """The latest version of each of the workspace's own types, sorted by name."""
        return [
            versions[max(versions)] for _, versions in sorted(self._declared.items()) if versions
        ]

    def get(self, name: str, version: int | None = None) -> NodeType | None:
        versions = self._declared.get(name)
        if versions is None:
            return self._registry.get(name, version)
        if version is None:
            return versions[max(versions)] if versions else None
        return versions.get(version)

    def latest_version(self, name: str) -> int | None:
        versions = self._declared.get(name)
        if versions is None:
            return self._registry.latest_version(name)
        return max(versions) if versions else None

    def has_name(self, name: str) -> bool:
        return bool(self._declared.get(name)) or self._registry.has_name(name)

    def latest(self) -> list[NodeType]:
        return sorted(
            [*self._registry.latest(), *self.declared_latest()], key=lambda known: known.name
        )

    def versions(self, name: str) -> list[int]:
        versions = self._declared.get(name)
        if versions is None:
            return self._registry.versions(name)
        return sorted(versions)

    def all(self) -> list[NodeType]:
        declared = [
            versions[version]
            for versions in self._declared.values()
            for version in sorted(versions)
        ]
        return sorted(
            [*self._registry.all(), *declared], key=lambda known: (known.name, known.version)
        )


# Loom's own node types, as pyproject.toml declares them.
BUILTIN_ENTRY_POINT = "engine.nodes.builtin:node_types"


def check_node_type(node_type: NodeType, *, schema: bool = True) -> None:
    """Refuse a type whose name, parameters schema (unless `schema` is False: trusted) or
    catalog is invalid (`NodeTypeRegistryError`, saying what is wrong)."""
    if not NODE_TYPE_NAME.match(node_type.name):
        raise NodeTypeRegistryError(f"invalid node type name {node_type.name!r}")
    if schema:
        check_parameters_schema(node_type)
    problems = catalog_problems(node_type.parameters_schema, node_type.catalog)
    if problems:
        raise NodeTypeRegistryError(
            f"node type {node_type.name!r} version {node_type.version} has a catalog that "
            f"does not fit its parameters: {'; '.join(problems)}"
        )


def check_parameters_schema(node_type: NodeType) -> None:
    """Refuse a parameters schema that is not valid JSON Schema Draft 2020-12.

    Checked once here so that validating workflows can trust every registered schema.
    """
    # jsonschema (9 MB, 50 ms) loads with the first schema to check, not with every start.
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(node_type.parameters_schema)
    except SchemaError as exc:
        raise NodeTypeRegistryError(
            f"node type {node_type.name!r} version {node_type.version} has an invalid "
            f"parameters schema: {exc.message}"
        ) from exc


def _as_node_types(loaded: object, source: str) -> list[NodeType]:
    if isinstance(loaded, NodeType):
        return [loaded]
    if callable(loaded):
        produced = loaded()
        if isinstance(produced, NodeType):
            return [produced]
        items = list(produced)
        bad = [item for item in items if not isinstance(item, NodeType)]
        if bad:
            raise NodeTypeRegistryError(f"entry point {source} returned non-NodeType {bad[0]!r}")
        return items
    raise NodeTypeRegistryError(f"entry point {source} is neither a NodeType nor a callable")


def load_registry() -> NodeTypeRegistry:
    """Build the registry from every installed `loom.node_types` entry point.

    A plugin that fails to import, or gives a type with a bad name, schema or catalog, is
    logged and left out, with the reason kept in `registry.packages`, so that one broken
    package cannot keep the server from starting; a name clash between two packages is an
    error, never a silent override.
    """
    registry = NodeTypeRegistry()
    packages: list[NodeTypePackage] = []
    loaded_values: set[str] = set()
    for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        # Stale metadata (an old egg-info beside a new install) can list one entry point
        # twice; it is the same code, so it is loaded once.
        if entry_point.value in loaded_values:
            continue
        loaded_values.add(entry_point.value)
        source = f"{entry_point.name} = {entry_point.value}"
        distribution, version = None, None
        try:
            distribution, version = _distribution(entry_point)
            node_types = _as_node_types(entry_point.load(), source)
            # Loom's own schemas are held valid by their tests (tests/engine/
            # test_builtin_node_types.py): checking them here cost a start 130 ms.
            trusted = entry_point.value == BUILTIN_ENTRY_POINT
            for node_type in node_types:
                check_node_type(node_type, schema=not trusted)
        except Exception as exc:
            logger.exception("node type plugin %s failed to load; skipped", source)
            packages.append(NodeTypePackage(source, distribution, version, error=_reason(exc)))
            continue
        for node_type in node_types:
            registry.register(node_type, schema_checked=True)  # checked just above
        given = tuple((node_type.name, node_type.version) for node_type in node_types)
        packages.append(NodeTypePackage(source, distribution, version, given))
    registry.packages = tuple(packages)
    return registry


def _distribution(entry_point: Any) -> tuple[str | None, str | None]:
    """The name and version of the distribution that declares the entry point, if known."""
    distribution = getattr(entry_point, "dist", None)
    if distribution is None:
        return None, None
    return distribution.metadata.get("Name"), distribution.version


def _reason(exc: BaseException) -> str:
    """Why a plugin was skipped, in one line (the log has the traceback)."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 2000 else text[:1997] + "..."
