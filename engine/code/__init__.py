"""The Code node's sandbox: JavaScript in V8 isolates (mini-racer), in host processes.

    sandbox = CodeSandbox(CodeLimits())
    result = await sandbox.run(CodeCall(code, "all_items", items, nodes, facts, timeout_s))

Why processes: V8 can take its embedder down (a fatal out-of-memory from one huge
allocation) and some builtins ignore termination (`fill` over a huge sparse array), so the
isolates live in small host processes (`host`) that Loom kills and replaces at will; the
Loom process only waits on a pipe from a thread of its own. Inside a host, SES (`js/`,
Hardened JavaScript) freezes every intrinsic and scripts run in a compartment whose global
object is frozen too: a call cannot leave anything behind for the next one.

Errors: `CodeFailure` (CODE_TIMEOUT, CODE_MEMORY_LIMIT, CODE_ERROR), one class with a type.

    limits      CodeLimits: time, heap, result size, console, pool size
    sandbox     CodeSandbox, CodeCall, CodeResult, CodeFailure (the parent side)
    host        the host process: one isolate, SES, the harness
    frames      the pipe protocol between them
    references  `$("Name")` references in a script's source (for validation)
"""

from __future__ import annotations

from engine.code.limits import CodeLimits
from engine.code.sandbox import CodeCall, CodeFailure, CodeResult, CodeSandbox

__all__ = ["CodeCall", "CodeFailure", "CodeLimits", "CodeResult", "CodeSandbox"]
