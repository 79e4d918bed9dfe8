"""Dotted paths into items: `customer.address.city` reads and writes nested objects.

A path is split on dots; a segment of digits indexes a list when reading (`tags.0`). A path
with an empty segment (`.hidden`, `a..b`) is taken as one literal key, so it still means
something. Writing copies every object along the path, so the caller only has to own a
shallow copy of the item for its input to stay untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final[Any] = _Missing()
"""What a read returns where the path leads nowhere (distinct from a null value)."""

Getter = Callable[[Any], Any]


def split_path(path: str) -> tuple[str, ...]:
    segments = path.split(".")
    return (path,) if "" in segments else tuple(segments)


def getter(path: str) -> Getter:
    """A function reading `path` from an item; hot loops build it once per run."""
    segments = split_path(path)
    if len(segments) == 1:
        key = segments[0]

        def get_key(item: Any) -> Any:
            return item.get(key, MISSING) if type(item) is dict else MISSING

        return get_key

    def get_nested(item: Any) -> Any:
        return _walk(item, segments)

    return get_nested


def get_path(item: Any, path: str) -> Any:
    """The value at `path` in `item`, or `MISSING`."""
    return _walk(item, split_path(path))


def _walk(value: Any, segments: tuple[str, ...]) -> Any:
    for segment in segments:
        if isinstance(value, dict):
            value = value.get(segment, MISSING)
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return MISSING
        if value is MISSING:
            return MISSING
    return value


def set_path(target: dict[str, Any], path: str | tuple[str, ...], value: Any) -> None:
    """Write `value` at `path` in `target`, which the caller owns.

    Objects along the path are copied before being changed; anything that is not an object
    on the way (a number, a list, nothing) is replaced by a new object.
    """
    segments = split_path(path) if isinstance(path, str) else path
    current = target
    for segment in segments[:-1]:
        child = current.get(segment)
        child = dict(child) if isinstance(child, dict) else {}
        current[segment] = child
        current = child
    current[segments[-1]] = value


def delete_path(target: dict[str, Any], path: str) -> None:
    """Remove the value at `path` from `target` (owned by the caller), copying on the way."""
    segments = split_path(path)
    current = target
    for segment in segments[:-1]:
        child = current.get(segment)
        if not isinstance(child, dict):
            return
        child = dict(child)
        current[segment] = child
        current = child
    current.pop(segments[-1], None)
