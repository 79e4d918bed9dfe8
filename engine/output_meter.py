"""Refusing outputs past the size limit: the errors, and the meter of items being built.

Outputs are counted before they are encoded (engine/output_size.py). The executor counts
every node's output when the behaviour returns it (engine/outputs.py); behaviours that build
many items in a loop (Set, Split Out, Merge) count them as they go with an `OutputMeter`, so
that an output past the limit fails at once instead of once it is built.
"""

from __future__ import annotations

from engine.json_depth import MAX_JSON_DEPTH, JsonTooDeep
from engine.nodes.base import Item, NodeError, NodeRunContext
from engine.output_limit import MAX_OUTPUT_SETTING
from engine.output_size import KeyNotText, OutputSizes
from engine.slices import at_once, paced


def too_large(
    counted_bytes: int, max_bytes: int, port: str | None = None, items: str | None = None
) -> NodeError:
    """NODE_OUTPUT_TOO_LARGE: at least `counted_bytes` of JSON, past `max_bytes`; `port` and
    `items` say where the limit was passed (the executor names the node)."""
    where = f", past it with output {port!r} {items}" if port is not None and items else ""
    return NodeError(
        f"produced more output than the limit of {max_bytes:,} bytes of JSON "
        f"({MAX_OUTPUT_SETTING}): at least {counted_bytes:,} bytes{where}",
        error_type="NODE_OUTPUT_TOO_LARGE",
        details={"bytes": counted_bytes, "maxBytes": max_bytes, "setting": MAX_OUTPUT_SETTING},
    )


def too_deep(port: str, index: int) -> NodeError:
    return NodeError(
        f"output {port!r} item {index} holds JSON nested more than {MAX_JSON_DEPTH} "
        "levels deep (the limit)",
        error_type="NODE_OUTPUT_TOO_DEEP",
        details={"port": port, "item": index, "maxDepth": MAX_JSON_DEPTH},
    )


def deepest_item(items: list[Item]) -> int:
    """The index of the first item nested past the limit (after a count found one)."""
    for index, item in enumerate(items):
        try:
            at_once(OutputSizes().count_items([item]))
        except JsonTooDeep:
            return index
        except KeyNotText:
            continue
    return 0


def passing_item(item_counts: list[int], allowed: int) -> int:
    """The index of the item with which counts of items (as a list) pass `allowed`."""
    total = 1  # the list's opening bracket
    for index, count in enumerate(item_counts):
        total += count + 1
        if total > allowed:
            return index
    return max(len(item_counts) - 1, 0)


def not_text_key() -> NodeError:
    return NodeError(
        "returned a value that is not JSON: an object key that is not text",
        error_type="NODE_OUTPUT_INVALID",
    )


class OutputMeter:
    """Counts the items a behaviour appends to `items` as it builds them: a loop calls
    `await meter.pause()` where it would pause (`ctx.due()`), and the items added since are
    counted before the event loop gets its turn; past the limit, `NODE_OUTPUT_TOO_LARGE`.
    The meters of one node run add up (`NodeRunContext.output_counted`): one limit for all
    its ports."""

    __slots__ = ("_counted", "_ctx", "_items", "_port")

    def __init__(self, ctx: NodeRunContext, items: list[Item], port: str = "main") -> None:
        self._ctx = ctx
        self._items = items
        self._port = port
        self._counted = 0

    async def pause(self) -> None:
        """Count the items added since the last call, then give the event loop a turn."""
        await self.count()
        await self._ctx.pause()

    async def count(self) -> None:
        """Count the items added since the last call (pausing inside a long count)."""
        start = self._counted
        added = self._items[start:]
        if not added:
            return
        ctx = self._ctx
        limit = ctx.max_output_bytes
        allowed = None if limit is None else limit - ctx.output_counted
        sizes = ctx.output_sizes
        if sizes is None:  # a context made for a one-off
            sizes = ctx.output_sizes = OutputSizes()
        try:
            count, item_counts = await paced(sizes.count_items(added, allowed), ctx.pause)
        except JsonTooDeep:
            raise too_deep(self._port, start + deepest_item(added)) from None
        except KeyNotText:
            raise not_text_key() from None
        self._counted = start + len(added)
        ctx.output_counted += count
        if limit is not None and allowed is not None and count > allowed:
            index = start + passing_item(item_counts, allowed)
            raise too_large(ctx.output_counted, limit, self._port, f"item {index}")
