"""The behaviour of a declarative node type (engine/declarative.py): for each item, render
its request template with `$parameter` and `$json`, send the request (and the pages after
it) through the HTTP Request node's own code, and map each answer to items.

The HTTP client and aiohttp come with the first request, as for the HTTP Request node.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from engine.expressions import CompiledParameters
from engine.nodes.base import Item, NodeError, NodeRunContext, PortItems


class DeclarativeRequest:
    """What a declarative node does: per item, render the request, send it (and the pages
    after it), map each answer to items."""

    def __init__(
        self,
        definition: Mapping[str, Any],
        compiled: CompiledParameters,
        *,
        defaults: dict[str, Any],
        method: str,
        settings: dict[str, Any],
        mapping: Mapping[str, Any],
        pagination: Mapping[str, Any] | None,
    ) -> None:
        self.definition = definition
        self.compiled = compiled
        self.method = method
        self.settings = settings
        self.select = [part for part in mapping.get("select", "").split(".") if part]
        self.split = bool(mapping.get("split", False))
        self.keep = tuple(mapping["keep"]) if "keep" in mapping else None
        self.drop = frozenset(mapping.get("drop", ()))
        self.pagination = pagination
        # `$parameter` holds these where the node does not set a parameter.
        self.defaults = defaults
        self.credential_kinds = tuple(definition.get("credentialKinds", ()))

    async def __call__(self, context: NodeRunContext, inputs: PortItems) -> PortItems:
        # aiohttp comes with the first request, as for the HTTP Request node.
        from engine.http_client import Auth
        from engine.nodes.http import check_status, decode, request_auth, send

        if context.resources is None:
            raise NodeError(
                "HTTP requests cannot be sent from this process (it has no HTTP client)",
                error_type="NOT_RUNNABLE",
            )
        undeclared = sorted(set(context.node.credentials) - set(self.credential_kinds))
        if undeclared:
            raise NodeError(
                f"this node type takes no {undeclared[0]} credential (it takes "
                f"{', '.join(self.credential_kinds) or 'none'})",
                error_type="INVALID_CREDENTIAL",
            )
        http = context.resources.http
        auth = await request_auth(context, http)
        output: list[Item] = []
        for index, item in enumerate(inputs.get("main") or [{}]):
            scope = context.scope(item, index)
            scope.parameter = {**self.defaults, **context.parameters(item, index)}
            request = self.compiled.render(scope)
            parameters = self._parameters(request)
            origin = _origin(parameters["url"])
            pages = self.pagination["maxPages"] if self.pagination else 1
            seen_cursors: set[str] = set()
            for _ in range(pages):
                # The credential goes to the first request's origin only, as on a redirect.
                same_origin = _origin(parameters["url"]) == origin
                response = await send(http, parameters, auth if same_origin else Auth())
                check_status(self.method, response)
                body = decode(response, "auto")
                output.extend(self._items(body))
                following = self._next(parameters, response.url, body, seen_cursors)
                if following is None:
                    break
                parameters = following
                await context.checkpoint()
            await context.checkpoint()
        return {"main": output}

    def _parameters(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The rendered request as the HTTP Request node's parameters (`send` takes them);
        a query or header entry rendered to null is left out."""
        parameters: dict[str, Any] = {
            "method": self.method,
            "url": request.get("url"),
            "query": _pairs(request.get("query")),
            "headers": _pairs(request.get("headers")),
            **self.settings,
        }
        if request.get("body") is not None:
            parameters["bodyType"] = "json"
            parameters["jsonBody"] = request["body"]
        return parameters

    def _items(self, body: Any) -> Iterator[Item]:
        selected = _select(body, self.select)
        values = selected if self.split and isinstance(selected, list) else [selected]
        for value in values:
            if not isinstance(value, dict):
                yield {"value": value}
            elif self.keep is not None:
                yield {key: value[key] for key in self.keep if key in value}
            elif self.drop:
                yield {key: field for key, field in value.items() if key not in self.drop}
            else:
                yield value

    def _next(
        self, parameters: dict[str, Any], url: str, body: Any, seen_cursors: set[str]
    ) -> dict[str, Any] | None:
        """The next page's request, or None when there is none."""
        pagination = self.pagination
        if pagination is None:
            return None
        if "nextUrl" in pagination:
            following = _select(body, pagination["nextUrl"].split("."))
            if not isinstance(following, str) or not following.strip():
                return None
            from yarl import URL

            next_url = str(URL(url).join(URL(following.strip())))
            if next_url == url:
                return None  # a page that names itself would be fetched until the cap
            return {**parameters, "url": next_url, "query": []}
        cursor = _select(body, pagination["cursor"].split("."))
        if cursor is None or cursor == "" or isinstance(cursor, dict | list):
            return None
        text = cursor if isinstance(cursor, str) else str(cursor)
        if text in seen_cursors:
            return None
        seen_cursors.add(text)
        name = pagination["cursorParameter"]
        query = [entry for entry in parameters["query"] if entry["name"] != name]
        return {**parameters, "query": [*query, {"name": name, "value": text}]}


def _pairs(entries: Any) -> list[dict[str, Any]]:
    if not isinstance(entries, dict):
        return []
    return [{"name": name, "value": value} for name, value in entries.items() if value is not None]


def _select(value: Any, path: list[str]) -> Any:
    """The value at a dotted path (`data.items`, `results.0`); None when it is not there."""
    for part in path:
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.lstrip("-").isdigit():
            index = int(part)
            value = value[index] if -len(value) <= index < len(value) else None
        else:
            return None
    return value


def _origin(url: Any) -> tuple[str, str, int | None] | None:
    from yarl import URL

    if not isinstance(url, str):
        return None
    try:
        parsed = URL(url.strip())
    except ValueError:
        return None
    return (parsed.scheme, parsed.host or "", parsed.port)
