"""The node output size limit: its default and bounds (no imports, so that the settings and
the command line can read it without loading the engine)."""

from __future__ import annotations

# Above the largest output the benchmarks run (100,000 items of about 1 KB: 108 MB).
DEFAULT_MAX_NODE_OUTPUT_BYTES = 128 * 1024 * 1024
# Room for an error item (errors are bounded: engine/truncation.py) under any limit.
MIN_MAX_NODE_OUTPUT_BYTES = 64 * 1024
MAX_OUTPUT_SETTING = "LOOM_MAX_NODE_OUTPUT_BYTES"
