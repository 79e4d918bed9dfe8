"""What a Code node script may use: time, heap, result size, console output, sandboxes."""

from __future__ import annotations

from dataclasses import dataclass

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class CodeLimits:
    """Limits of the Code node, from the settings (`LOOM_CODE_*`, see docs/operations.md)."""

    # A script's time when its node sets no timeout (with one, the node's timeout rules).
    timeout_s: float = 10.0
    # V8 heap a script may use, on top of what the sandbox itself holds (about 15 MB).
    heap_bytes: int = 64 * MB
    # The JSON of what a script returns.
    result_bytes: int = 16 * MB
    # Sandbox processes of this Loom process: Code nodes running at once; others wait.
    pool_size: int = 2
    console_lines: int = 100
    console_bytes: int = 64 * 1024

    @property
    def v8_max_heap_mb(self) -> int:
        """V8's own ceiling: past the heap limit, an allocation too big for any GC to catch
        in time ends the sandbox process instead of growing it to gigabytes."""
        return max(64, 4 * self.heap_bytes // MB + 64)

    @property
    def rss_budget_bytes(self) -> int:
        """Resident memory a sandbox process may add to what it holds when idle: the heap
        (V8 holds up to about twice what is live), array buffers, the request and result."""
        return 3 * self.heap_bytes + 2 * self.result_bytes + 64 * MB
