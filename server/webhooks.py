"""`/webhook/{path}`: requests that start runs of active workflows' webhook triggers.

The request becomes the run's first item (`body`, `query`, `headers`, `method`, `path`). The
answer depends on the trigger's response mode: at once (202 with the execution id), when the
run ends (the items of the last node that produced data), or what a Respond to Webhook node
says. Waiting uses the process's live events (in distributed mode they come from the workers
through Redis) and reads the result from the database. An `Idempotency-Key` header answers
with the first run for that key instead of starting another: its execution id, or the answer
sent the first time, kept for `LOOM_IDEMPOTENCY_KEY_TTL_HOURS` (storage/idempotency.py) also
when the run kept none of its data or was deleted since.

Over 400 lines, but one cohesive thing: the webhook route, from request to answer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

import orjson
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from engine import json_depth, metrics
from engine.bus import EventFanout, ExecutionStream
from engine.handover import ANSWERING_MODES, RunHandover, webhook_waits
from engine.json_depth import JsonTooDeep
from engine.lifecycle import ExecutionLifecycle
from engine.node_type_policy import PolicySnapshot
from engine.nodes.base import CredentialProvider, PortItems
from engine.ports import StartConflict, StartRequest
from engine.retention import SaveData
from engine.states import ExecutionStatus
from engine.validation import Problem
from storage import executions, idempotency, payload_store, payloads, webhooks
from storage.db import Database
from storage.models import NodeRun
from storage.webhooks import Route, RouteCache

logger = logging.getLogger("loom.webhooks")

MAX_IDEMPOTENCY_KEY = 200


class _TooLarge(Exception):
    pass


class _Pruned(Exception):
    """The run a request waits for is no longer stored: it ended keeping none of its data
    and the pruner deleted it (`LOOM_PRUNE_NONE_AFTER_S` after its end)."""


class _Unkept(Response):
    """The end of a run whose answer the database does not hold: it kept no outputs
    (`summary` or `none`), and the answer is in its waiter's handover (embedded mode) or,
    for a repeat, in its key's record once the first request sends it. `fallback`: what the
    database says, when neither can come."""

    def __init__(self, fallback: Response) -> None:
        super().__init__(status_code=500)
        self.fallback = fallback


class _TypeDisabled(Exception):
    """A start refused by the node type policies: the problem of the first node."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _error(http_status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=http_status)


class WebhookServices(Protocol):
    """What webhooks need of the process (the GraphQL layer's `Services` has it)."""

    @property
    def database(self) -> Database: ...

    @property
    def webhook_routes(self) -> RouteCache: ...

    @property
    def fanout(self) -> EventFanout | None: ...

    @property
    def lifecycle(self) -> ExecutionLifecycle | None: ...

    def node_type_policy(self) -> PolicySnapshot: ...


class WebhookEndpoint:
    """The ASGI endpoint for `/webhook/{path}`."""

    def __init__(
        self,
        services: WebhookServices,
        credentials: CredentialProvider | None,
        timeout_s: float,
        key_ttl_hours: float = 24.0,
    ) -> None:
        self.services = services
        self.credentials = credentials
        self.timeout_s = timeout_s
        self.key_ttl_hours = key_ttl_hours
        # Runs of this process whose keyed first request timed out: followed to their
        # answer, which is kept for the key's repeats (`_follow`).
        self._following: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        try:
            response = await self.handle(request)
        except Exception:
            metrics.webhook_answered(500)  # answered 500 by the server's error handling
            raise
        metrics.webhook_answered(response.status_code)
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        path = request.path_params["path"].strip("/")
        database = self.services.database
        routes = self.services.webhook_routes
        route = routes.get(request.method, path)
        if route is None:
            generation = routes.generation
            async with database.session() as session:
                route = await webhooks.lookup(session, request.method, path)
            if route is not None:
                routes.put(request.method, path, route, generation)
        if route is None:
            return _error(404, f"no active webhook for {request.method} /webhook/{path}")
        refused, secret_header = await self._authenticate(request, route)
        if refused is not None:
            return refused
        limit = int(route.parameters.get("maxBodyBytes") or 1024 * 1024)
        try:
            raw = await _read(request, limit)
        except _TooLarge:
            return _error(413, f"the body is larger than {limit} bytes")
        except ClientDisconnect:
            return Response(status_code=400)
        try:
            body = _body(raw, request.headers.get("content-type", ""))
        except JsonTooDeep as exc:
            return _error(400, f"the JSON body is {exc}", code="JSON_TOO_DEEP", maxDepth=exc.limit)
        item = {
            "body": body,
            "query": dict(request.query_params),
            # The header that carried the credential's secret is checked, then left out:
            # the item is stored and shown, the secret never is.
            "headers": {
                name: value for name, value in request.headers.items() if name != secret_header
            },
            "method": request.method,
            "path": path,
        }
        key = request.headers.get("idempotency-key")
        if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
            return _error(400, f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
        mode = route.parameters.get("responseMode", "immediately")
        waits = webhook_waits(route.parameters)
        key = None if key is None else f"webhook:{key}"
        gone = partial(_error, 404, f"no active webhook for {request.method} /webhook/{path}")
        lifecycle = self.services.lifecycle
        fanout = self.services.fanout
        assert lifecycle is not None and fanout is not None
        # The new run's events, when the answer waits for it.
        streams: list[ExecutionStream] = []

        def listen(execution_id: str) -> None:
            # Listening before the run can start: every event of it then comes to the
            # stream, and the database is read only when one says there is an answer.
            streams.append(fanout.open(execution_id))

        async def prepare() -> StartRequest:
            # No new execution while a node type of the workflow is disabled (a repeat of an
            # earlier one, by its Idempotency-Key, still gets that one's answer).
            policy = self.services.node_type_policy()
            if not policy.empty and (disabled := policy.problems(route.nodes, route.workspace_id)):
                raise _TypeDisabled(disabled[0])
            return StartRequest(
                workspace_id=route.workspace_id,
                workflow_id=route.workflow_id,
                workflow_settings=route.settings,
                version_id=route.workflow_version_id,
                version=route.workflow_version,
                mode="webhook",
                input=item,
                idempotency_key=key,
                start_node_id=route.node_id,
                runnable=route,
            )

        # In embedded mode without a concurrency limit the run starts here in one write
        # and hands its answer over in memory (`started.handover`).
        start = partial(
            lifecycle.start,
            prepare,
            idempotency_key=None if key is None else (route.workflow_id, key),
            handover=RunHandover(route.respond_node_ids) if waits else None,
            listen=listen if waits else None,
        )
        try:
            if key is not None:
                known = await idempotency.find(
                    self.services.database, route.workflow_id, key, self.key_ttl_hours
                )
                if known is not None:
                    return await self._answer_known(known, route, mode, key)
            started = await start()
            await self._remember(route, key, started.execution_id)
            if not started.created:
                try:
                    return await self._answer_earlier(started.execution_id, route, mode, key)
                except _Pruned:
                    # The run with this key was pruned since it was found: like a request
                    # coming a moment later, this one starts a run (the key is free again).
                    pruned = started.execution_id
                    started = await start()
                    await self._remember(route, key, started.execution_id, replacing=pruned)
                    if not started.created:
                        return await self._answer_earlier(started.execution_id, route, mode, key)
            if not waits:
                return JSONResponse({"executionId": started.execution_id}, status_code=202)
            answer = await self._answer(
                started.execution_id, route, mode, streams[-1], False, started.handover
            )
            if answer.status_code == 504 and key is not None and started.handover is not None:
                self._follow(route, key, mode, started.execution_id, started.handover)
            return await self._keep(route, key, started.execution_id, answer)
        except StartConflict:
            return gone()  # the workflow was deleted since its route was read
        except _Pruned:
            # Only if the run ended, kept nothing and was pruned between two reads of it.
            return _error(410, "the run ended and is no longer stored; send it again")
        except _TypeDisabled as policy_refusal:
            # 503: the endpoint answers again once the type is enabled (senders retry a
            # 5xx). Who disabled it and why is the workspace's to see, not the caller's.
            logger.warning(
                "webhook of workflow %s refused: node %s: %s",
                route.workflow_id,
                policy_refusal.problem.node_id,
                policy_refusal.problem.message,
            )
            return _error(
                503,
                "a node type this workflow uses is disabled; it runs again once enabled",
                code=policy_refusal.problem.code,
                nodeId=policy_refusal.problem.node_id,
            )
        finally:
            for stream in streams:
                fanout.close(stream)

    async def _answer_known(
        self, known: idempotency.KnownKey, route: Route, mode: str, key: str
    ) -> Response:
        """The answer for a key in use (storage/idempotency.py): the first run's id, the
        answer sent the first time, or (none sent yet) the run's answer when it comes."""
        if mode not in ANSWERING_MODES:
            return JSONResponse({"executionId": known.execution_id}, status_code=202)
        if known.answer is not None:
            return _replay(known.execution_id, known.answer)
        try:
            return await self._answer_earlier(known.execution_id, route, mode, key)
        except _Pruned:
            # The first caller got no answer (it timed out or went away) and the run, which
            # is gone now, kept none: the key stays in use until it expires.
            return _error(
                410,
                "the run for this Idempotency-Key ended and is no longer stored",
                executionId=known.execution_id,
            )

    async def _answer_earlier(
        self, execution_id: str, route: Route, mode: str, key: str | None = None
    ) -> Response:
        """The answer for a run started earlier with the same idempotency key."""
        if mode not in ANSWERING_MODES:
            return JSONResponse({"executionId": execution_id}, status_code=202)
        fanout = self.services.fanout
        assert fanout is not None
        stored = None if key is None else partial(self._stored, route, key)
        stream = fanout.open(execution_id)
        try:
            answer = await self._answer(execution_id, route, mode, stream, True, None, stored)
        finally:
            fanout.close(stream)
        return await self._keep(route, key, execution_id, answer)

    async def _stored(self, route: Route, key: str) -> Response | None:
        """The answer the first request for the key got, once it was sent."""
        known = await idempotency.find(
            self.services.database, route.workflow_id, key, self.key_ttl_hours
        )
        if known is None or known.answer is None:
            return None
        return _replay(known.execution_id, known.answer)

    def _follow(
        self, route: Route, key: str, mode: str, execution_id: str, handover: RunHandover
    ) -> None:
        """Keep following a run whose keyed first request timed out (504): its answer, in
        this process's handover only when the run keeps no outputs, is kept for the key's
        repeats once it comes."""
        fanout = self.services.fanout
        assert fanout is not None

        async def follow() -> None:
            try:
                while True:
                    stream = fanout.open(execution_id)
                    try:
                        answer = await self._answer(
                            execution_id, route, mode, stream, True, handover
                        )
                    finally:
                        fanout.close(stream)
                    if answer.status_code != 504:
                        await self._keep(route, key, execution_id, answer)
                        return
            except _Pruned:
                return
            except Exception:
                logger.exception("keeping the answer of execution %s for its key", execution_id)

        task = asyncio.create_task(follow(), name=f"webhook-answer-{execution_id}")
        self._following.add(task)
        task.add_done_callback(self._following.discard)

    async def _remember(
        self, route: Route, key: str | None, execution_id: str, replacing: str | None = None
    ) -> None:
        if key is not None:
            await idempotency.remember(
                self.services.database,
                route.workflow_id,
                key,
                execution_id,
                self.key_ttl_hours,
                replacing,
            )

    async def _keep(
        self, route: Route, key: str | None, execution_id: str, answer: Response
    ) -> Response:
        """Keep the answer a caller gets for a key's run, for its repeats; not a timeout's
        (the run goes on and answers a repeat later)."""
        if key is None or answer.status_code == 504:
            return answer
        headers = {
            name: value for name, value in answer.headers.items() if name != "content-length"
        }
        await idempotency.record_answer(
            self.services.database,
            route.workflow_id,
            key,
            execution_id,
            answer.status_code,
            headers,
            bytes(answer.body),
        )
        return answer

    async def _answer(
        self,
        execution_id: str,
        route: Route,
        mode: str,
        stream: ExecutionStream,
        check_first: bool,
        handover: RunHandover | None,
        stored: Callable[[], Awaitable[Response | None]] | None = None,
    ) -> Response:
        if mode == "last_node":
            return await self._when_finished(execution_id, stream, check_first, handover, stored)
        return await self._when_responded(
            execution_id, route, stream, check_first, handover, stored
        )

    async def _authenticate(
        self, request: Request, route: Route
    ) -> tuple[Response | None, str | None]:
        """A refusal, or None; and the (lower-case) header that carries the secret."""
        if not route.credentials:
            return None, None
        ((kind, credential_id),) = list(route.credentials.items())[:1]
        if self.credentials is None:
            return _error(500, "credentials are not available on this server"), None
        try:
            fields = await self.credentials.fields(route.workspace_id, kind, credential_id)
        except LookupError:
            logger.warning("webhook of workflow %s: its credential is gone", route.workflow_id)
            return _error(500, "the webhook's credential is missing"), None
        if kind == "api_key_header":
            header = str(fields["headerName"]).lower()
            given = request.headers.get(header, "")
            if hmac.compare_digest(given.encode(), str(fields["apiKey"]).encode()):
                return None, header
            return _error(401, "authentication required"), header
        if kind == "basic_auth":
            expected = f"{fields.get('username', '')}:{fields['password']}".encode()
            header = request.headers.get("authorization", "")
            scheme, _, value = header.partition(" ")
            try:
                given_pair = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                given_pair = b""
            if scheme.lower() == "basic" and hmac.compare_digest(given_pair, expected):
                return None, "authorization"
            refused = JSONResponse(
                {"error": "authentication required"},
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="loom"'},
            )
            return refused, "authorization"
        return _error(500, f"credential kind {kind!r} cannot guard a webhook"), None

    async def _when_finished(
        self,
        execution_id: str,
        stream: ExecutionStream,
        check_first: bool,
        handover: RunHandover | None,
        stored: Callable[[], Awaitable[Response | None]] | None,
    ) -> Response:
        async def finished(session: AsyncSession) -> Response | None:
            ended = await executions.outcome(session, execution_id)
            if ended is None:
                raise _Pruned
            status, error, legacy_output = ended
            if not ExecutionStatus(status).is_terminal:
                return None
            if status != ExecutionStatus.SUCCEEDED.value:
                return _run_failed(execution_id, status, error)
            found = await payload_store.execution_payloads(session, [execution_id], payloads.OUTPUT)
            output = found.get(execution_id, legacy_output)
            if output is None and await _kept_no_outputs(session, execution_id):
                return _Unkept(JSONResponse([]))
            return JSONResponse(output or [])

        def handed() -> Response | None:
            assert handover is not None
            status = handover.status
            if status is None or not status.is_terminal:
                return None
            if status is not ExecutionStatus.SUCCEEDED:
                error = None if handover.error is None else handover.error.to_json()
                return _run_failed(execution_id, status.value, error)
            return JSONResponse(handover.output or [])

        return await self._wait(
            execution_id,
            finished,
            stream,
            check_first,
            _finishing,
            handed if handover else None,
            stored,
        )

    async def _when_responded(
        self,
        execution_id: str,
        route: Route,
        stream: ExecutionStream,
        check_first: bool,
        handover: RunHandover | None,
        stored: Callable[[], Awaitable[Response | None]] | None,
    ) -> Response:
        async def responded(session: AsyncSession) -> Response | None:
            runs = (await executions.node_runs(session, [execution_id])).get(execution_id, [])
            answered = [
                run
                for run in runs
                if run.node_id in route.respond_node_ids and run.status == "SUCCEEDED"
            ]
            if answered:
                return await _respond_with(session, execution_id, answered[0])
            row = await executions.reload_or_none(session, execution_id)
            if row is None:
                raise _Pruned
            if not ExecutionStatus(row.status).is_terminal:
                return None
            if row.status != ExecutionStatus.SUCCEEDED.value:
                return _run_failed(execution_id, row.status, row.error)
            return _succeeded_silently(execution_id)

        def handed() -> Response | None:
            assert handover is not None
            if handover.answered is not None:
                return _answer(handover.answered[1])
            status = handover.status
            if status is None or not status.is_terminal:
                return None
            if status is not ExecutionStatus.SUCCEEDED:
                error = None if handover.error is None else handover.error.to_json()
                return _run_failed(execution_id, status.value, error)
            return _succeeded_silently(execution_id)

        def answering(item: Any) -> bool:
            if _event_type(item) == "NODE_SUCCEEDED":
                return getattr(item, "node_id", None) in route.respond_node_ids
            return _finishing(item)

        return await self._wait(
            execution_id,
            responded,
            stream,
            check_first,
            answering,
            handed if handover else None,
            stored,
        )

    async def _wait(
        self,
        execution_id: str,
        check: Callable[[AsyncSession], Awaitable[Response | None]],
        stream: ExecutionStream,
        check_first: bool,
        answering: Callable[[Any], bool],
        handed: Callable[[], Response | None] | None = None,
        stored: Callable[[], Awaitable[Response | None]] | None = None,
    ) -> Response:
        """`check` the database when a live event of the execution may bring the answer
        (`answering` tells those events), when the stream cannot be trusted (woken,
        overflowed), and after a second without events, until it answers or the webhook
        times out. A run of this process hands its answer over in memory (`handed`): it is
        taken once an answering event, published only after its commit, says it is there,
        or once the database says the run ended without keeping it (`_Unkept`). A repeat
        by an Idempotency-Key takes the answer the first request got (`stored`) as soon as
        it was sent; the end of a run that kept no outputs is no answer for it."""
        loop_time = asyncio.get_running_loop().time
        deadline = loop_time() + self.timeout_s
        due = check_first
        announced = False
        while True:
            if due:
                stream.reset()
                answer = handed() if handed is not None and announced else None
                if answer is not None:
                    return answer
                if stored is not None and (answer := await stored()) is not None:
                    return answer
                async with self.services.database.session() as session:
                    answer = await check(session)
                if isinstance(answer, _Unkept):
                    # The end is committed: a handover of this process holds the answer.
                    taken = handed() if handed is not None else None
                    if taken is not None:
                        return taken
                    answer = answer.fallback if stored is None else None
                if answer is not None:
                    return answer
            remaining = deadline - loop_time()
            if remaining <= 0:
                return _error(
                    504,
                    f"no answer within {self.timeout_s:g} s; the run goes on",
                    executionId=execution_id,
                )
            if not await stream.wait(min(remaining, 1.0)):
                due = True  # a second without events: look anyway
                continue
            announced = any(map(answering, stream.items))
            due = stream.woken or stream.overflowed or announced
            if not due:
                stream.items.clear()


def _run_failed(execution_id: str, status: str, error: dict[str, Any] | None) -> JSONResponse:
    """The answer to a webhook whose run failed or was cancelled before it answered: the
    run's error (its type, message and the node it came from), as the execution shows it."""
    error = error or {}
    return _error(
        500,
        error.get("message", f"the run ended {status}"),
        errorType=error.get("type", status),
        nodeId=error.get("nodeId"),
        nodeName=error.get("nodeName"),
        executionId=execution_id,
        status=status,
    )


def _replay(execution_id: str, answer: idempotency.StoredAnswer) -> Response:
    """The answer the first caller for a key got, as it was sent."""
    if answer.body is None:
        return _error(
            500,
            "the answer to the first request for this Idempotency-Key was larger than "
            f"{idempotency.MAX_STORED_ANSWER_BYTES} bytes and was not kept",
            executionId=execution_id,
        )
    return Response(answer.body, status_code=answer.status_code, headers=answer.headers)


def _event_type(item: Any) -> str:
    """The type of a live event as the stream holds it (an engine or GraphQL event)."""
    kind = getattr(item, "type", None)
    return str(getattr(kind, "value", kind))


def _finishing(item: Any) -> bool:
    return _event_type(item) == "EXECUTION_FINISHED"


def _succeeded_silently(execution_id: str) -> JSONResponse:
    return _error(
        500,
        "the run succeeded without a Respond to Webhook node answering",
        executionId=execution_id,
        status=ExecutionStatus.SUCCEEDED.value,
    )


async def _respond_with(session: AsyncSession, execution_id: str, run: NodeRun) -> Response:
    outputs = await payload_store.payloads_by_run(session, [run.id])
    if run.id not in outputs and await _kept_no_outputs(session, execution_id):
        return _Unkept(_answer({}))
    return _answer(outputs.get(run.id) or {})


async def _kept_no_outputs(session: AsyncSession, execution_id: str) -> bool:
    """Whether the execution ended keeping no outputs (`saved_data` summary or none)."""
    row = await executions.reload_or_none(session, execution_id)
    return row is not None and row.saved_data in (SaveData.SUMMARY.value, SaveData.NONE.value)


def _answer(outputs: PortItems) -> Response:
    """The answer a Respond to Webhook node's outputs say (its first item of `main`)."""
    items = outputs.get("main") or []
    answer = items[0] if items else {}
    status = answer.get("status", 200)
    headers = {str(k): str(v) for k, v in (answer.get("headers") or {}).items()}
    body = answer.get("body")
    if isinstance(body, str) and "content-type" not in {k.lower() for k in headers}:
        return Response(body, status_code=status, headers=headers, media_type="text/plain")
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


async def _read(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _body(raw: bytes, content_type: str) -> Any:
    """The body as the item holds it: JSON parsed (past the nesting limit `JsonTooDeep`),
    a form as a flat object of strings, anything else (and JSON that does not parse) as text.
    """
    if not raw:
        return None
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json" or kind.endswith("+json"):
        try:
            return json_depth.loads(raw)
        except JsonTooDeep:
            raise
        except ValueError:
            return raw.decode(errors="replace")
    if kind == "application/x-www-form-urlencoded":
        from urllib.parse import parse_qsl

        return dict(parse_qsl(raw.decode(errors="replace")))
    return raw.decode(errors="replace")
