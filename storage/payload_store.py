"""Payloads in the database: execution inputs and outputs, node run outputs, stored and read
back with references resolved (their encoding: storage/payloads.py)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import Table, delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine.nodes.base import PortItems
from engine.states import NodeRunStatus
from storage import payloads
from storage.driver_sql import insert_rows
from storage.models import (
    Execution,
    ExecutionPayload,
    NodeRun,
    NodeRunPayload,
)

_EXECUTION_PAYLOADS: Table = ExecutionPayload.__table__  # type: ignore[attr-defined]
_INSERT_EXECUTION_PAYLOAD = insert_rows(_EXECUTION_PAYLOADS)


async def store_execution_payload(
    session: AsyncSession,
    execution_id: str,
    kind: str,
    value: Any,
    encoded: tuple[bytes, int] | None = None,
    encoding: str = payloads.ENCODING,
    *,
    replace: bool = False,
) -> None:
    """Store an execution's input or output, or a reference to it (`encoded` and
    `encoding` say how it was encoded, when it already was); `replace` one stored before."""
    data, raw_bytes = encoded if encoded is not None else payloads.encode_payload(value)
    if replace:
        await session.exec(
            delete(ExecutionPayload).where(
                col(ExecutionPayload.execution_id) == execution_id,
                col(ExecutionPayload.kind) == kind,
            )
        )
    await _INSERT_EXECUTION_PAYLOAD.run(
        session,
        [
            {
                "execution_id": execution_id,
                "kind": kind,
                "encoding": encoding,
                "raw_bytes": raw_bytes,
                "data": data,
            }
        ],
    )


async def insert_execution_payloads(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Store encoded inputs or outputs of several executions at once (`execution_id`,
    `kind`, `encoding`, `raw_bytes`, `data` each)."""
    await _INSERT_EXECUTION_PAYLOAD.run(session, rows)


async def execution_payloads(
    session: AsyncSession, execution_ids: Collection[str], kind: str
) -> dict[str, Any]:
    """Inputs (or outputs) of several executions, by execution id; absent ones left out."""
    query = select(ExecutionPayload).where(
        col(ExecutionPayload.execution_id).in_(execution_ids), ExecutionPayload.kind == kind
    )
    found: dict[str, Any] = {}
    references: dict[str, tuple[str, str]] = {}
    for row in await session.exec(query):
        if row.encoding == payloads.RUN_REFERENCE:
            reference = orjson.loads(row.data)
            references[row.execution_id] = (reference["nodeRunId"], reference["port"])
        elif row.encoding == payloads.CHUNKED:  # an output by value: its one port's items
            found[row.execution_id] = next(iter(payloads.decode_chunked(row.data).values()))
        else:
            found[row.execution_id] = payloads.decode(row.data, row.encoding)
    if references:
        runs = await payloads_by_run(session, [run_id for run_id, _ in references.values()])
        for execution_id, (run_id, port) in references.items():
            found[execution_id] = runs.get(run_id, {}).get(port)
    return found


async def execution_input(session: AsyncSession, row: Execution) -> Any:
    found = await execution_payloads(session, [row.id], payloads.INPUT)
    return found.get(row.id, row.input)


async def decode_run_payloads(
    session: AsyncSession, rows: Iterable[tuple[str, str, str, bytes]]
) -> dict[str, PortItems]:
    """Node run outputs from (key, execution id, encoding, data) rows, references resolved."""
    decoded: dict[str, PortItems] = {}
    inputs_wanted: dict[str, tuple[str, str]] = {}
    for key, execution_id, encoding, data in rows:
        if encoding == payloads.INPUT_REFERENCE:
            inputs_wanted[key] = (execution_id, data.decode())
        else:
            decoded[key] = payloads.decode(data, encoding)
    if inputs_wanted:
        ids = {execution_id for execution_id, _ in inputs_wanted.values()}
        inputs = await execution_payloads(session, ids, payloads.INPUT)
        for key, (execution_id, port) in inputs_wanted.items():
            decoded[key] = {port: [inputs.get(execution_id, {})]}
    return decoded


async def payload(session: AsyncSession, node_run_id: str) -> PortItems | None:
    """The full output of a node run, if it produced one."""
    return (await payloads_by_run(session, [node_run_id])).get(node_run_id)


async def succeeded_outputs(
    session: AsyncSession, execution_id: str, node_ids: Collection[str] | None = None
) -> dict[str, PortItems]:
    """Outputs of every node that SUCCEEDED in the execution (of those of `node_ids`, when
    given), by node id."""
    query = (
        select(
            NodeRun.node_id,
            NodeRunPayload.execution_id,
            NodeRunPayload.encoding,
            NodeRunPayload.data,
        )
        .join(NodeRunPayload, col(NodeRunPayload.node_run_id) == col(NodeRun.id))
        .where(
            NodeRun.execution_id == execution_id,
            NodeRun.status == NodeRunStatus.SUCCEEDED.value,
        )
    )
    if node_ids is not None:
        query = query.where(col(NodeRun.node_id).in_(list(node_ids)))
    return await decode_run_payloads(
        session, ((a, b, c, d) for a, b, c, d in await session.exec(query))
    )


async def payloads_by_run(
    session: AsyncSession, node_run_ids: Sequence[str]
) -> dict[str, PortItems]:
    """Full outputs of several node runs at once (for a DataLoader)."""
    query = select(
        NodeRunPayload.node_run_id,
        NodeRunPayload.execution_id,
        NodeRunPayload.encoding,
        NodeRunPayload.data,
    ).where(col(NodeRunPayload.node_run_id).in_(node_run_ids))
    return await decode_run_payloads(
        session, ((a, b, c, d) for a, b, c, d in await session.exec(query))
    )
