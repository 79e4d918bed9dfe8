"""The engine's errors form one tree under `EngineError`, drawn in engine/errors.py."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import engine
from engine import errors
from engine.errors import EngineError


def _engine_errors() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(engine.__path__, "engine."):
        if module_info.name == "engine.code.host":  # the sandbox process's entry point
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, Exception)
                and value.__module__ == module.__name__
                and not name.startswith("_")
            ):
                found[name] = value
    return found


def test_every_public_error_of_the_engine_is_an_engine_error() -> None:
    strays = [
        name for name, error in _engine_errors().items() if not issubclass(error, EngineError)
    ]
    assert not strays, f"errors outside the tree: {strays}"


def test_the_tree_in_the_docstring_names_every_error() -> None:
    assert errors.__doc__ is not None
    found = _engine_errors()
    assert len(found) > 20  # the walk saw the engine
    missing = [
        name for name in found if name != "EngineError" and f"+-- {name}" not in errors.__doc__
    ]
    assert not missing, f"errors missing from engine/errors.py's tree: {missing}"
