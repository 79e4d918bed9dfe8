"""The floor of bench/webhooks.py: a plain Starlette route under uvicorn that parses the same
JSON body as the webhooks and answers a small JSON object.

    python -m uvicorn bench.floor_app:app --port PORT --log-level warning
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def floor(request: Request) -> JSONResponse:
    body = await request.json()
    return JSONResponse({"ok": True, "fields": len(body)})


app = Starlette(routes=[Route("/floor", floor, methods=["POST"])])
