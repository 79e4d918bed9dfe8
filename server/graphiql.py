"""GraphiQL, served by Loom itself: the page and the built files of the npm packages it runs
on (server/static/graphiql/; README.md there says where they come from and how to update
them). The page loads nothing from another host, so it works offline."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

ASSETS_DIR = Path(__file__).resolve().parent / "static" / "graphiql"
ASSETS_PATH = "/static/graphiql"  # the page refers to it relatively: "static/graphiql/..."

# The page's own rule: scripts, styles and connections (HTTP and the websocket) stay on this
# origin. GraphiQL sets inline styles and its CSS embeds its fonts as data: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "font-src 'self' data:; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@cache
def page_html() -> str:
    """The GraphiQL page (read once)."""
    return (ASSETS_DIR / "index.html").read_text(encoding="utf-8")


def assets_route() -> Mount:
    """The route that serves the page's scripts and styles."""
    return Mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="graphiql")
