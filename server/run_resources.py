"""What `loom run` lends to nodes: the server's guarded HTTP client and a Code node sandbox,
under the same settings (`LOOM_HTTP_ALLOWED_NETWORKS`, `LOOM_CODE_*`).

A file run has no database, so what lives there is out of reach, and the nodes that need it
fail saying so (named by the executor, with the reason below): credentials, which the server
keeps encrypted, and other workflows, which Execute Workflow would call.
"""

from __future__ import annotations

from typing import Any

from engine.code import CodeSandbox
from engine.network_policy import NetworkPolicy
from engine.nodes.base import (
    CallRefused,
    ChildResult,
    NodeError,
    NodeResources,
    SubworkflowCall,
)
from server.settings import Settings

CREDENTIALS_UNAVAILABLE = "CREDENTIALS_UNAVAILABLE"
SUBWORKFLOWS_UNAVAILABLE = "SUBWORKFLOWS_UNAVAILABLE"


class NoCredentials:
    """Every lookup fails: credentials are stored (encrypted) by the server only."""

    async def fields(self, workspace_id: str, kind: str, credential_id: str) -> dict[str, Any]:
        raise NodeError(
            f"credential {credential_id!r} ({kind}) cannot be used: `loom run` has no "
            "credentials (the server keeps them, encrypted in its database). Run the workflow "
            "on the server, or for a local test leave `credentials` out and send the key in a "
            "header or query parameter, such as {{ $json.apiKey }} with --input",
            error_type=CREDENTIALS_UNAVAILABLE,
        )


class NoWorkflows:
    """Every call is refused: other workflows live in the server's database."""

    async def start(self, call: SubworkflowCall) -> list[str]:
        raise CallRefused(
            SUBWORKFLOWS_UNAVAILABLE,
            f"`loom run` runs one workflow file, without a database: calling workflow "
            f"{call.workflow_id!r} needs the server (run this workflow there)",
        )

    async def results(
        self, parent_run_id: str, max_bytes: int | None = None
    ) -> list[ChildResult] | None:
        return None  # nothing was started


def file_run_resources(settings: Settings) -> NodeResources:
    """An HTTP client guarded by `LOOM_HTTP_ALLOWED_NETWORKS` exactly as the server's, a Code
    node sandbox with the server's limits (its processes start on first use), and stand-ins
    that refuse what only the server has. The caller closes them (`close()`)."""
    policy = NetworkPolicy.from_strings(settings.http_allowed_networks)
    return NodeResources(
        policy, NoCredentials(), NoWorkflows(), CodeSandbox(settings.code_limits())
    )
