"""The HTTP Request node: one request per input item, through the process's guarded client.

Credentials come from the node's `credentials` (`{kind: id}`), looked up in the execution's
own workspace at run time, and are added to the request (and dropped by the client on a
redirect to another origin). Connection failures, timeouts, 429 and 5xx are retried with
exponential backoff that honours `Retry-After`; other 4xx fail the node with the status.
Error messages never contain headers, bodies or the query string (a key may be there).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter
from yarl import URL

from engine import json_depth, metrics
from engine.expressions.functions import EvalError, to_text
from engine.http_client import Auth, HttpClient, HttpError, HttpResponse, InvalidUrl, parse_url
from engine.nodes.base import CredentialFields, Item, NodeError, NodeRunContext, PortItems
from engine.nodes.parameters import choice, invalid_parameter, number, shown

MAX_RETRY_AFTER_S = 60.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
DEFAULT_TIMEOUT_S = 30.0


class _RetryableStatus(Exception):
    def __init__(self, response: HttpResponse) -> None:
        super().__init__(f"status {response.status}")
        self.response = response


def _retry_after_s(response: HttpResponse) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _Wait:
    """Exponential backoff, or what the server asked for in `Retry-After` (capped)."""

    def __init__(self, backoff_s: float) -> None:
        self.backoff = wait_exponential_jitter(
            multiplier=backoff_s, max=MAX_RETRY_AFTER_S, jitter=backoff_s / 2
        )

    def __call__(self, state: RetryCallState) -> float:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, _RetryableStatus):
            asked = _retry_after_s(error.response)
            if asked is not None:
                return min(asked, MAX_RETRY_AFTER_S)
        return float(self.backoff(state))


def _retryable(error: BaseException) -> bool:
    return isinstance(error, _RetryableStatus) or (isinstance(error, HttpError) and error.retryable)


@dataclass(slots=True)
class _OAuthToken:
    token: str
    expires_at: float


# Client-credentials tokens by credential id and a digest of its fields (a changed secret
# fetches a new token; the fields themselves are not kept), the most recently used first out
# of mind last.
_TOKENS: OrderedDict[tuple[str, bytes], _OAuthToken] = OrderedDict()
MAX_CACHED_TOKENS = 1000


async def request_auth(context: NodeRunContext, http: HttpClient) -> Auth:
    """What the node's one credential (`credentials: {kind: id}`) adds to its requests."""
    credentials = context.node.credentials
    if not credentials:
        return Auth()
    if len(credentials) > 1:
        raise NodeError("use one credential per HTTP Request node", error_type="INVALID_CREDENTIAL")
    ((kind, credential_id),) = credentials.items()
    assert context.resources is not None
    try:
        fields = await context.resources.credentials.fields(
            context.info.workspace_id, kind, credential_id
        )
    except LookupError as exc:
        raise NodeError(
            f"credential {credential_id!r} ({kind}) is neither owned by nor shared with this "
            "workflow's workspace",
            error_type="CREDENTIAL_NOT_FOUND",
        ) from exc
    auth = _auth(kind, fields, await _oauth(http, kind, credential_id, fields))
    if isinstance(fields, CredentialFields):
        auth.allowed_hosts = fields.allowed_domains
        auth.name = fields.name
    return auth


async def _oauth(
    http: HttpClient, kind: str, credential_id: str, fields: Mapping[str, Any]
) -> str | None:
    """An OAuth2 client-credentials credential's token (its token URL is one of the fields,
    which only the owner's workspace sets)."""
    if kind != "oauth2_client_credentials":
        return None
    try:
        return await _oauth_token(http, credential_id, fields)
    except HttpError as exc:
        raise NodeError(
            f"the OAuth2 token request failed: {exc}", error_type=exc.error_type
        ) from exc


def _auth(kind: str, fields: Mapping[str, Any], token: str | None) -> Auth:
    if kind == "api_key_header":
        return Auth(headers={fields["headerName"]: fields["apiKey"]})
    if kind == "api_key_query":
        return Auth(query={fields["paramName"]: fields["apiKey"]})
    if kind == "bearer_token":
        return Auth(headers={"Authorization": f"Bearer {fields['token']}"})
    if kind == "basic_auth":
        pair = f"{fields.get('username', '')}:{fields['password']}".encode()
        return Auth(headers={"Authorization": f"Basic {base64.b64encode(pair).decode()}"})
    if kind == "custom_headers":
        return Auth(headers=dict(fields["headers"]))
    if token is not None:
        return Auth(headers={"Authorization": f"Bearer {token}"})
    raise NodeError(
        f"credential kind {kind!r} cannot sign HTTP requests", error_type="INVALID_CREDENTIAL"
    )


async def _oauth_token(http: HttpClient, credential_id: str, fields: Mapping[str, Any]) -> str:
    """A client-credentials token, cached until shortly before it expires (per credential
    and fields: a changed secret fetches a new one)."""
    digest = hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).digest()
    key = (credential_id, digest)
    cached = _TOKENS.get(key)
    if cached is not None and cached.expires_at > time.monotonic():
        _TOKENS.move_to_end(key)
        return cached.token
    form = {"grant_type": "client_credentials"}
    for name, field in (("scope", "scope"), ("audience", "audience")):
        if fields.get(field):
            form[name] = fields[field]
    # The client's id and secret are the credential (`Auth`): a redirect that leaves the
    # token URL's origin does not carry them, whether in the header or in the form.
    if fields.get("clientAuthentication") == "body":
        client = Auth(
            form={"client_id": fields["clientId"], "client_secret": fields["clientSecret"]}
        )
    else:
        pair = f"{fields['clientId']}:{fields['clientSecret']}".encode()
        client = Auth(headers={"Authorization": f"Basic {base64.b64encode(pair).decode()}"})
    response = await http.request(
        "POST", fields["tokenUrl"], data=form, auth=client, timeout_s=DEFAULT_TIMEOUT_S
    )
    try:
        answer = orjson.loads(response.body)
        token = str(answer["access_token"])
        lifetime = float(answer.get("expires_in", 3600))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise NodeError(
            f"the token URL answered {response.status} without an access token",
            error_type="OAUTH2_TOKEN_FAILED",
        ) from exc
    if response.status >= 400:
        raise NodeError(
            f"the token URL answered {response.status}", error_type="OAUTH2_TOKEN_FAILED"
        )
    _TOKENS[key] = _OAuthToken(token, time.monotonic() + max(0.0, lifetime - 30))
    _TOKENS.move_to_end(key)
    while len(_TOKENS) > MAX_CACHED_TOKENS:
        _TOKENS.popitem(last=False)
    return token


def _pairs(entries: Any, parameter: str) -> list[tuple[str, str]]:
    """Name/value entries, values as text the way expressions show them (JSON for lists and
    objects, `true` for true), never Python's spelling."""
    pairs = []
    for index, entry in enumerate(entries or []):
        if not (isinstance(entry, dict) and entry.get("name")):
            continue
        try:
            pairs.append((to_text(entry["name"]), to_text(entry.get("value"))))
        except EvalError as exc:
            raise invalid_parameter(f"{parameter}[{index}]", str(exc)) from None
    return pairs


def safe_url(url: str) -> str:
    """The URL without what may hold a secret (a password, a key in the query), for
    messages."""
    return str(URL(url).with_user(None).with_query(None).with_fragment(None))


def decode(response: HttpResponse, response_format: str) -> Any:
    """The body: JSON (`json`, or `auto` with a JSON content type) or text."""
    content_type = response.headers.get("Content-Type", "")
    as_json = response_format == "json" or (
        response_format == "auto" and "json" in content_type.lower()
    )
    if as_json:
        try:
            return json_depth.loads(response.body) if response.body else None
        except json_depth.JsonTooDeep as exc:
            raise NodeError(
                f"the response of {safe_url(response.url)} is {exc}",
                error_type="HTTP_RESPONSE_TOO_DEEP",
                details={"maxDepth": exc.limit},
            ) from exc
        except orjson.JSONDecodeError as exc:
            raise NodeError(
                f"the response of {safe_url(response.url)} is not JSON",
                error_type="HTTP_INVALID_JSON",
            ) from exc
    return response.body.decode(errors="replace")


async def http_request(context: NodeRunContext, inputs: PortItems) -> PortItems:
    if context.resources is None:
        raise NodeError(
            "HTTP requests cannot be sent from this process (it has no HTTP client)",
            error_type="NOT_RUNNABLE",
        )
    http = context.resources.http
    auth = await request_auth(context, http)
    output: list[Item] = []
    items = list(inputs.get("main") or [{}])
    for index, item in enumerate(items):
        parameters = context.parameters(item, index)
        response = await send(http, parameters, auth)
        check_status(parameters.get("method", "GET"), response)
        body = decode(response, parameters.get("responseFormat", "auto"))
        if parameters.get("fullResponse"):
            output.append(
                {
                    "status": response.status,
                    # Plain strings: aiohttp's header names are a str subclass.
                    "headers": {str(name): value for name, value in response.headers.items()},
                    "body": body,
                }
            )
        elif parameters.get("splitArray") and isinstance(body, list):
            output.extend(entry if isinstance(entry, dict) else {"value": entry} for entry in body)
        else:
            output.append(body if isinstance(body, dict) else {"body": body})
        await context.checkpoint()
    return {"main": output}


def check_status(method: str, response: HttpResponse) -> None:
    """A 4xx or 5xx answer (once retries are used up) fails the node with its status."""
    if response.status >= 400:
        raise NodeError(
            f"{method} {safe_url(response.url)} answered {response.status}",
            error_type="HTTP_STATUS",
            details={"status": response.status},
        )


def _url(parameters: Mapping[str, Any]) -> str:
    """The `url` parameter, checked: a node error names what is wrong with it."""
    url = parameters.get("url")
    if not isinstance(url, str) or not url.strip():
        raise invalid_parameter("url", f"must be an http or https URL, got {shown(url)}")
    try:
        parse_url(url.strip())
    except InvalidUrl as exc:
        raise invalid_parameter("url", f"is not a valid URL: {exc.reason}") from None
    return url.strip()


def _timeout_s(parameters: Mapping[str, Any]) -> float:
    if parameters.get("timeoutSeconds") is None:
        return DEFAULT_TIMEOUT_S
    return number(parameters, "timeoutSeconds", minimum=0.1)


async def send(http: HttpClient, parameters: Mapping[str, Any], auth: Auth) -> HttpResponse:
    """One request as the HTTP Request node's parameters describe it, retried on connection
    errors, 429 and 5xx; the last answer once retries are used up."""
    url = _url(parameters)
    method = choice(parameters, "method", METHODS, default="GET")
    body_type = parameters.get("bodyType", "none")
    data: Any = None
    json_body: Any = None
    if body_type == "json":
        json_body = parameters.get("jsonBody")
    elif body_type == "form":
        data = dict(_pairs(parameters.get("formBody"), "formBody"))
    elif body_type == "text":
        try:
            data = to_text(parameters.get("textBody", ""))
        except EvalError as exc:
            raise invalid_parameter("textBody", str(exc)) from None
    timeout_s = _timeout_s(parameters)
    headers = dict(_pairs(parameters.get("headers"), "headers"))
    query = _pairs(parameters.get("query"), "query")
    retry = parameters.get("retry") or {}
    retrying = AsyncRetrying(
        stop=stop_after_attempt(int(retry.get("maxAttempts", 3))),
        wait=_Wait(float(retry.get("backoffSeconds", 1.0))),
        retry=retry_if_exception(_retryable),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                response = await http.request(
                    method,
                    url,
                    headers=headers,
                    query=query,
                    data=data,
                    json_body=json_body,
                    auth=auth,
                    timeout_s=timeout_s,
                    max_redirects=int(parameters.get("maxRedirects", 5)),
                    max_bytes=int(parameters.get("maxResponseBytes", 10 * 1024 * 1024)),
                )
                if response.status in RETRY_STATUSES:
                    raise _RetryableStatus(response)
    except _RetryableStatus as exc:
        response = exc.response  # retries used up: the node fails with the last status
    except HttpError as exc:
        metrics.http_node_called(None)
        raise NodeError(str(exc), error_type=exc.error_type) from exc
    except asyncio.CancelledError:
        # Cut off by the node's or the execution's timeout, or a cancel: no answer either.
        metrics.http_node_called(None)
        raise
    metrics.http_node_called(response.status)
    return response
