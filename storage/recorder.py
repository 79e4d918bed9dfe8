"""The group-commit writer: one per process, it stores every execution's records.

The executor emits records without waiting. This writer drains all that are pending and
stores them in one transaction per round: one commit when idle, large batches under load,
and the single writer SQLite needs. Only after the commit are the events handed to the
subscribers (`on_commit`), so what anyone sees always matches the database.

Over 400 lines, but one cohesive thing: the group-commit writer and the statements it batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, bindparam, insert, or_, update
from sqlalchemy.exc import DataError, IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from engine import log_context, metrics
from engine.events import Event, ExecutionUpdate, NodeRunState, Record
from engine.outputs import EncodedOutputs, serialize_outputs
from engine.ports import LeaseLost
from engine.retention import SaveData
from engine.states import EXECUTION_TRANSITIONS, ExecutionStatus
from storage import executions, payload_store, payloads, reuse
from storage.db import Database, run_core
from storage.driver_sql import DriverStatement, insert_rows
from storage.event_rows import INSERT_EVENTS, event_row, insert_events
from storage.models import AuditEvent, Execution, NodeRun, NodeRunPayload
from storage.saved_data import Endings

logger = logging.getLogger("loom.recorder")

# Payloads larger than this are compressed in a thread (zstd releases the GIL) from the moment
# they are emitted, so that compression overlaps the nodes that run next and the writes of
# earlier batches.
_THREAD_COMPRESS_BYTES = 256 * 1024
# `throttle()` waits while more payload bytes than this wait to be stored (counted raw until
# compressed, then compressed: a payload's raw JSON is let go of as soon as it is compressed).
MAX_PENDING_PAYLOAD_BYTES = 128 * 1024 * 1024
_RETRY_DELAY_S = 0.5
# A round that follows another within `_BUSY_S` first lets the event loop run
# `_GATHER_TURNS` times. SQLite calls are inline (storage/sqlite_inline.py), so a round runs
# without suspending, and the writer, woken by the first record or start, took rounds of about
# one request each under webhook load: a round's fixed cost (its transaction, statements and
# commit, over 1 ms of CPU) was paid per request. A few turns let the requests and runs the
# loop is serving add theirs: (a) of bench/webhooks.py went from about 1 round per request to
# 0.1, and from 2.1-2.5 to 0.8 ms of CPU per request (docs/benchmarks.md). An idle writer
# stores at once; the turns stop after `_GATHER_MAX_S`, so that a loop whose turns are long
# (a CPU-heavy node between awaits) delays a round by about that much, not by eight such
# turns; a stopping writer does not wait. (A 3 ms cap cut the grouping under webhook load:
# bench/webhooks.py (a) 0.08-0.09x against 0.10-0.19x without a cap, same session.)
_BUSY_S = 0.05
_GATHER_TURNS = 8
_GATHER_MAX_S = 0.01

CommitListener = Callable[[Sequence[Event]], None]
FenceListener = Callable[[str], object]

_NODE_RUNS: Table = NodeRun.__table__  # type: ignore[attr-defined]
_PAYLOADS: Table = NodeRunPayload.__table__  # type: ignore[attr-defined]
# The lease generations of the executions a batch writes for, rows locked in id order (as the
# lease keeper locks them: no deadlock) until the commit; SQLite has a single writer anyway.
_GENERATIONS = (
    select(Execution.id, Execution.lease_generation)
    .where(col(Execution.id).in_(bindparam("ids", expanding=True)))
    .order_by(col(Execution.id))
)
_GENERATIONS_LOCKED = _GENERATIONS.with_for_update()
# The writer's statements, compiled once and run on the driver (storage/driver_sql.py).
_INSERT_NODE_RUNS = insert_rows(_NODE_RUNS)
_INSERT_PAYLOADS = insert_rows(_PAYLOADS)
_UPDATE_NODE_RUN = DriverStatement(
    update(_NODE_RUNS)
    .where(_NODE_RUNS.c.id == bindparam("run_id"))
    .values(
        {
            name: bindparam(name)
            for name in (
                "status",
                "attempt",
                "input_items",
                "output_items",
                "error",
                "console",
                "source",
                "started_at",
                "finished_at",
            )
        }
    )
)


def _allowed_sources(target: ExecutionStatus) -> list[str]:
    return [source.value for source, targets in EXECUTION_TRANSITIONS.items() if target in targets]


def _node_run_values(state: NodeRunState) -> dict[str, Any]:
    return {
        "status": state.status.value,
        "attempt": state.attempt,
        "input_items": state.input_items,
        "output_items": state.output_items,
        "error": None if state.error is None else state.error.to_json(),
        "console": None if state.console is None else state.console.to_json(),
        "source": state.source,
        "started_at": state.started_at,
        "finished_at": state.finished_at,
    }


_AUDIT_EVENTS: Table = AuditEvent.__table__  # type: ignore[attr-defined]


@dataclass(slots=True)
class NewExecution:
    """An execution to insert with the next round (embedded mode's one-write start, see
    storage/starts.py): its row, its input's payload row, its first events (rows, and as
    published once committed), and what to do once committed (start its run); and the
    audit record of an API caller's start (storage/audit.py), stored with it."""

    row: dict[str, Any]
    input_row: dict[str, Any]
    events: list[Event]
    on_commit: Callable[[], None]
    done: asyncio.Future[None] | None = None
    audit_row: dict[str, Any] | None = None


@dataclass(slots=True)
class WriterTransaction:
    """A transaction of the writer's (`GroupCommitWriter.transaction`): its session, and the
    events stored in it (storage/event_rows.py), published once it commits."""

    session: AsyncSession
    events: list[Event] = field(default_factory=list)

    def announce(self, events: Sequence[Event]) -> None:
        """Publish these events (stored in this transaction) once it commits."""
        self.events.extend(events)

    async def add_events(self, events: Sequence[Event]) -> None:
        """Store these events in this transaction, and publish them once it commits."""
        await insert_events(self.session, events)
        self.events.extend(events)


@dataclass(slots=True)
class _Payload:
    """A record's payload while it waits to be stored: encoded, then compressed."""

    raw_size: int
    raw: EncodedOutputs | None
    compressed: bytes | None = None
    compressing: asyncio.Future[bytes] | None = None

    @property
    def held_bytes(self) -> int:
        return self.raw_size if self.compressed is None else len(self.compressed)


class GroupCommitWriter:
    """Stores records in batches; `flush()` waits until what was emitted is committed."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._pending: list[Record] = []
        self._emitted = 0
        self._committed = 0
        self._pending_payload_bytes = 0
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._known_runs: set[str] = set()
        self._listeners: list[CommitListener] = []
        # Payloads of pending records, by id of the record (alive while pending): the writer
        # takes them over from the records it is given.
        self._payloads: dict[int, _Payload] = {}
        self._notifying: set[asyncio.Future[None]] = set()
        # Lease generations of the executions this process runs: their records are stored
        # only while the database still shows that generation (see `fence`).
        self._fences: dict[str, int] = {}
        self._fence_listeners: list[FenceListener] = []
        self._creations: list[NewExecution] = []
        self._lost: set[str] = set()  # executions whose fence refused records (reported)
        self.fenced_out = 0
        self.rounds = 0

    def on_commit(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    def fence(self, execution_id: str, generation: int) -> None:
        """Store the execution's records only while its lease generation is `generation`:
        a process that lost its lease cannot record anything more for it."""
        self._fences[execution_id] = generation
        self._lost.discard(execution_id)

    def unfence(self, execution_id: str) -> None:
        self._fences.pop(execution_id, None)

    def on_fence_lost(self, listener: FenceListener) -> None:
        """Called with the id of an execution whose records were refused by its fence."""
        self._fence_listeners.append(listener)

    async def start(self) -> None:
        if self._task is None:
            self._task = log_context.start_task(self._run(), name="loom-group-commit")

    async def stop(self) -> None:
        """Store what is pending, then stop."""
        if self._task is None:
            return
        await self.flush()
        self._stopping = True
        self._wake.set()
        await self._task
        self._task = None

    async def create(self, execution: NewExecution) -> None:
        """Insert a new execution with the next round: its transaction then carries the
        starts of every request that came meanwhile, and the records of running executions.
        Returns once committed (its events published, `on_commit` called); raises what the
        database refused it with (`IntegrityError`: an idempotency key used already, or
        the workflow deleted meanwhile), or any error of its round: a creation is not
        retried, its caller answers."""
        if self._task is None:
            await self.start()
        execution.done = asyncio.get_running_loop().create_future()
        self._creations.append(execution)
        self._wake.set()
        # Shielded: the round goes on whatever happens to the caller, and so does the run.
        await asyncio.shield(execution.done)

    def emit(self, record: Record) -> None:
        self._pending.append(record)
        self._emitted += 1
        if record.payload is not None:
            raw, record.payload = record.payload, None
            held = self._payloads[id(record)] = _Payload(raw.raw_bytes, raw)
            self._pending_payload_bytes += held.raw_size
            if held.raw_size > _THREAD_COMPRESS_BYTES:
                loop = asyncio.get_running_loop()
                held.compressing = loop.run_in_executor(None, payloads.pack, raw)
                held.compressing.add_done_callback(lambda _: self._compressed(held))
        self._wake.set()

    def _compressed(self, held: _Payload) -> None:
        """A payload compressed in a thread: only the compressed bytes are kept."""
        assert held.compressing is not None
        if held.compressing.cancelled() or held.compressing.exception() is not None:
            return  # compressed again when stored
        before = held.held_bytes
        held.compressed, held.raw = held.compressing.result(), None
        self._pending_payload_bytes -= before - held.held_bytes
        task = asyncio.ensure_future(self._notify())
        self._notifying.add(task)
        task.add_done_callback(self._notifying.discard)

    async def _notify(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    async def throttle(self) -> None:
        if self._pending_payload_bytes <= MAX_PENDING_PAYLOAD_BYTES:
            return
        if self._task is None:
            await self.start()
        async with self._progress:
            await self._progress.wait_for(
                lambda: self._pending_payload_bytes <= MAX_PENDING_PAYLOAD_BYTES
            )

    async def flush(self) -> None:
        target = self._emitted
        if self._task is None:
            await self.start()
        async with self._progress:
            await self._progress.wait_for(lambda: self._committed >= target)

    async def _run(self) -> None:
        ended = -_BUSY_S  # when the last round ended
        while True:
            await self._wake.wait()
            woken = time.perf_counter()
            if woken - ended < _BUSY_S and not self._stopping:
                # Busy: the loop's other ready work (requests parsed, runs emitting) gets a
                # few turns to reach this round before it is taken (see `_GATHER_TURNS`).
                for _ in range(_GATHER_TURNS):
                    await asyncio.sleep(0)
                    if time.perf_counter() - woken > _GATHER_MAX_S:
                        break
            self._wake.clear()
            if not self._pending and not self._creations:
                if self._stopping:
                    return
                continue
            batch, self._pending = self._pending, []
            creations, self._creations = self._creations, []
            began = time.perf_counter()
            while True:
                try:
                    written = await self._store(batch, creations)
                    self._created(creations)
                    break
                except (IntegrityError, DataError):
                    if creations:
                        # Most likely a key used twice: each creation alone finds out which,
                        # then the records again.
                        await self._create_one_by_one(creations)
                        creations = []
                        continue
                    # Not transient: store what can be stored, one record at a time.
                    logger.exception("a batch of %d records was refused", len(batch))
                    written = await self._store_one_by_one(batch)
                    break
                except Exception as exc:
                    for creation in creations:
                        _settle(creation, exc)
                    creations = []
                    logger.exception("storing %d execution records failed; retrying", len(batch))
                    await asyncio.sleep(_RETRY_DELAY_S)
            for record in batch:
                held = self._payloads.pop(id(record), None)
                if held is not None:
                    self._pending_payload_bytes -= held.held_bytes
            metrics.group_commit(len(batch) + len(creations), time.perf_counter() - began)
            self.rounds += 1
            ended = time.perf_counter()
            self._committed += len(batch)
            await self._notify()
            # Only what was committed: not the records a fence or the database refused.
            self._publish([record.event for record in written])
            if self._stopping:
                # What came during the round's turns was stored with it: `stop()` set the
                # wake-up before those, and waits for this task to end.
                self._wake.set()

    @property
    def listening(self) -> bool:
        """Whether anything listens to what it commits (`on_commit`)."""
        return bool(self._listeners)

    def _publish(self, events: Sequence[Event]) -> None:
        """Hand committed events to the listeners: the one place that publishes."""
        if not events:
            return
        for listener in self._listeners:
            try:
                listener(events)
            except Exception:
                logger.exception("commit listener failed")

    # -- fenced transactions (review 1 of wt-split) --------------------------------------
    @contextlib.asynccontextmanager
    async def transaction(self, fenced: Sequence[str] = ()) -> AsyncIterator[WriterTransaction]:
        """A transaction of the writer's own, for a write that answers its caller at once
        (see the module docstring); the events it `announce`s are published once it
        commits, and not if it does not. It is not serialized with the writer's rounds.

        `fenced`: executions it writes for (a sub-workflow call's parent). Those this
        process holds a lease of (`fence`) have their rows locked until the commit
        (PostgreSQL) and `LeaseLost` is raised, nothing written, if the lease moved on."""
        async with self._database.transaction() as session:
            await self._check_fences(session, fenced)
            commit = WriterTransaction(session)
            yield commit
        self._publish(commit.events)

    async def _check_fences(self, session: AsyncSession, execution_ids: Sequence[str]) -> None:
        held = sorted(
            {execution_id for execution_id in execution_ids if execution_id in self._fences}
        )
        if not held:
            return
        query = _GENERATIONS if self._database.is_sqlite else _GENERATIONS_LOCKED
        rows = await run_core(session, query, {"ids": held})
        current = {row[0]: row[1] for row in rows.all()}
        for execution_id in held:
            if current.get(execution_id) != self._fences.get(execution_id):
                self.fenced_out += 1
                raise LeaseLost(f"execution {execution_id}: this process no longer holds its lease")

    # -- end of fenced transactions ---------------------------------------------------------

    def _created(self, creations: list[NewExecution]) -> None:
        """Committed: announce the new executions, start their runs, answer their callers."""
        if not creations:
            return
        self._publish([event for creation in creations for event in creation.events])
        for creation in creations:
            _settle(creation, None)

    async def _create_one_by_one(self, creations: list[NewExecution]) -> None:
        for creation in creations:
            try:
                async with self._database.transaction() as session:
                    await _insert_creations(session, [creation])
            except Exception as exc:
                _settle(creation, exc)
            else:
                self._created([creation])

    async def _store(
        self, batch: list[Record], creations: Sequence[NewExecution] = ()
    ) -> list[Record]:
        """Stores the batch (after the new executions) in one transaction; returns the
        records committed (those of executions whose lease moved on are left out)."""
        # Payloads that an execution ending without its data in this batch does not keep
        # are not compressed (storage/saved_data.py).
        ending = Endings.of(batch)
        compressed = await self._compress(
            [record for record in batch if ending.keeps_data(record.event.execution_id)]
            if ending
            else batch
        )
        outputs: dict[int, tuple[bytes, int, str]] = {}
        for record in batch:
            change = record.execution
            if change is None or not change.has_output or change.saved_data is not SaveData.ALL:
                continue
            if change.output_from is not None:
                # The items of a node run recorded already (in this batch or before).
                reference = payloads.output_reference(*change.output_from)
                outputs[id(record)] = (reference, 0, payloads.RUN_REFERENCE)
            else:
                # Items of an earlier execution's node run (reused by a retry): stored again.
                data, raw_bytes = await asyncio.to_thread(
                    payloads.encode_output, change.output_port or "main", change.output
                )
                outputs[id(record)] = (data, raw_bytes, payloads.CHUNKED)
        async with self._database.transaction() as session:
            if creations:
                await _insert_creations(session, creations)
            new_run_ids, written = await self._write(session, batch, compressed, outputs)
        # Only after the commit are these runs known to exist.
        self._known_runs.update(new_run_ids)
        finished = {
            record.event.execution_id
            for record in batch
            if record.execution is not None
            and (
                record.execution.status.is_terminal
                or record.execution.status is ExecutionStatus.WAITING
            )
        }
        for record in batch:
            if record.node_run is not None and record.event.execution_id in finished:
                self._known_runs.discard(record.node_run.id)
        for execution_id in finished:
            self._fences.pop(execution_id, None)
        return written

    async def _fenced(self, session: AsyncSession, batch: list[Record]) -> list[Record]:
        """The batch without the records of executions whose lease moved on. The rows read
        stay locked (PostgreSQL) until the commit, so no claim can slip in between."""
        fenced = {
            record.event.execution_id
            for record in batch
            if record.event.execution_id in self._fences
        }
        if not fenced:
            return batch
        query = _GENERATIONS if self._database.is_sqlite else _GENERATIONS_LOCKED
        rows = await run_core(session, query, {"ids": list(fenced)})
        current = {row[0]: row[1] for row in rows.all()}
        lost = {
            execution_id
            for execution_id in fenced
            if current.get(execution_id) != self._fences.get(execution_id)
        }
        if not lost:
            return batch
        for execution_id in lost - self._lost:
            # The fence stays: whatever the stale run still emits is refused too.
            self._lost.add(execution_id)
            logger.warning(
                "execution %s: records refused, this process no longer holds its lease",
                execution_id,
            )
            for listener in self._fence_listeners:
                listener(execution_id)
        kept = [record for record in batch if record.event.execution_id not in lost]
        self.fenced_out += len(batch) - len(kept)
        return kept

    async def _store_one_by_one(self, batch: list[Record]) -> list[Record]:
        written: list[Record] = []
        for record in batch:
            try:
                written += await self._store([record])
            except (IntegrityError, DataError):
                logger.exception(
                    "dropped record %s #%d (%s): the database refused it",
                    record.event.execution_id,
                    record.event.sequence,
                    record.event.type,
                )
        return written

    async def _store_uncopied(self, session: AsyncSession, batch: list[Record]) -> None:
        """The reused outputs whose earlier payload row was gone when copied (the earlier
        execution's deleted since the run loaded it): encoded and stored from memory, so that
        no node run succeeds without its output."""
        copied = {
            record.node_run.id: record
            for record in batch
            if record.payload_from is not None and record.node_run is not None
        }
        missing = await reuse.uncopied(session, list(copied))
        rows = []
        for run_id in missing:
            record = copied[run_id]
            logger.warning(
                "execution %s: the output node %s reused (node run %s) is gone; stored again",
                record.event.execution_id,
                record.event.node_id,
                record.payload_from,
            )
            encoded = serialize_outputs(record.reused or {})
            rows.append(
                {
                    "node_run_id": run_id,
                    "execution_id": record.event.execution_id,
                    "encoding": payloads.CHUNKED,
                    "raw_bytes": encoded.raw_bytes,
                    "data": payloads.pack(encoded),
                }
            )
        if rows:
            await _INSERT_PAYLOADS.run(session, rows)

    async def _compress(self, batch: list[Record]) -> dict[int, bytes]:
        compressed: dict[int, bytes] = {}  # by id of the record
        for record in batch:
            held = self._payloads.get(id(record))
            if held is None:
                continue
            if held.compressed is None and held.compressing is not None:
                try:
                    await asyncio.shield(held.compressing)
                except Exception:
                    logger.exception("compressing a payload failed; trying again")
            if held.compressed is not None:
                compressed[id(record)] = held.compressed
            else:
                assert held.raw is not None
                compressed[id(record)] = held.compressed = payloads.pack(held.raw)
        return compressed

    async def _write(
        self,
        session: AsyncSession,
        batch: list[Record],
        compressed: dict[int, bytes],
        outputs: dict[int, tuple[bytes, int, str]],
    ) -> tuple[list[str], list[Record]]:
        """Writes what the fences let through; returns the new node run ids and the records
        written."""
        batch = await self._fenced(session, batch)
        # Executions that end keeping less than all their data (storage/saved_data.py).
        ending = Endings.of(batch)
        # Node runs: the latest state of each run in this batch, inserted or updated.
        runs: dict[str, tuple[str, NodeRunState]] = {}
        for record in batch:
            if record.node_run is not None:
                runs[record.node_run.id] = (record.event.execution_id, record.node_run)
        new_runs = [
            {
                "id": run_id,
                "execution_id": execution_id,
                "node_id": state.node_id,
                "node_name": state.node_name,
                "created_at": state.started_at or record_time(batch),
                **_node_run_values(state),
            }
            for run_id, (execution_id, state) in runs.items()
            if run_id not in self._known_runs and not state.stored
        ]
        # Core statements on the tables, executed with a list of rows: one executemany each,
        # where the ORM's bulk path would issue a statement per row.
        if new_runs:
            await _INSERT_NODE_RUNS.run(session, new_runs)
        changed_runs = [
            {"run_id": run_id, **_node_run_values(state)}
            for run_id, (_, state) in runs.items()
            if run_id in self._known_runs or state.stored
        ]
        if changed_runs:
            await _UPDATE_NODE_RUN.run(session, changed_runs)
        payload_rows = [
            {
                "node_run_id": record.node_run.id,
                "execution_id": record.event.execution_id,
                "encoding": payloads.CHUNKED,
                "raw_bytes": self._payloads[id(record)].raw_size,
                "data": compressed[id(record)],
            }
            for record in batch
            if id(record) in compressed
            and record.node_run is not None
            and ending.keeps_data(record.event.execution_id)
        ]
        payload_rows += [
            {
                "node_run_id": record.node_run.id,
                "execution_id": record.event.execution_id,
                "encoding": payloads.INPUT_REFERENCE,
                "raw_bytes": 0,
                "data": record.input_port.encode(),
            }
            for record in batch
            if record.input_port is not None
            and record.node_run is not None
            and ending.keeps_data(record.event.execution_id)
        ]
        if payload_rows:
            await _INSERT_PAYLOADS.run(session, payload_rows)
        copies = [
            {
                "node_run_id": record.node_run.id,
                "execution_id": record.event.execution_id,
                "earlier_run_id": record.payload_from,
            }
            for record in batch
            if record.payload_from is not None
            and record.node_run is not None
            and ending.keeps_data(record.event.execution_id)
        ]
        if copies:  # outputs reused by runs to a node, copied in the database
            await run_core(session, reuse.COPY_PAYLOAD, copies)
            await self._store_uncopied(session, batch)
        if not batch:
            return [], []
        await INSERT_EVENTS.run(
            session, [ending.event_row(event_row(record.event)) for record in batch]
        )
        changes = [
            (record.event.execution_id, record.execution)
            for record in batch
            if record.execution is not None
        ]
        await _update_executions(session, changes)
        output_rows = [
            {
                "execution_id": record.event.execution_id,
                "kind": payloads.OUTPUT,
                "encoding": outputs[id(record)][2],
                "raw_bytes": outputs[id(record)][1],
                "data": outputs[id(record)][0],
            }
            for record in batch
            if id(record) in outputs
        ]
        if output_rows:
            await payload_store.insert_execution_payloads(session, output_rows)
        await ending.apply(session)
        return [row["id"] for row in new_runs], batch


def _settle(creation: NewExecution, error: BaseException | None) -> None:
    """Tell the creator how its creation went; a committed one's run starts first."""
    if error is None:
        try:
            creation.on_commit()
        except Exception:
            logger.exception("starting execution %s failed", creation.row["id"])
    done = creation.done
    if done is None or done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


async def _insert_creations(session: AsyncSession, creations: Sequence[NewExecution]) -> None:
    await executions.lock_workflows(session, [c.row for c in creations])
    await executions.INSERT_EXECUTION.run(session, [c.row for c in creations])
    await payload_store.insert_execution_payloads(session, [c.input_row for c in creations])
    await INSERT_EVENTS.run(
        session, [event_row(event) for creation in creations for event in creation.events]
    )
    audited = [creation.audit_row for creation in creations if creation.audit_row is not None]
    if audited:
        await run_core(session, insert(_AUDIT_EVENTS), audited)


def record_time(batch: list[Record]) -> Any:
    return batch[0].event.at


@functools.lru_cache(maxsize=64)
def _execution_update(status: ExecutionStatus, names: tuple[str, ...]) -> DriverStatement:
    """The UPDATE of an execution row to `status` setting `names`, built once: only from
    the states the state machine allows (or the same status)."""
    table: Table = Execution.__table__  # type: ignore[attr-defined]
    return DriverStatement(
        update(table)
        .where(
            table.c.id == bindparam("v_execution_id"),
            # Plain comparisons, not IN: an IN list is expanded per execution, which
            # executemany (a batch of changes) cannot do.
            or_(
                *(table.c.status == source for source in [*_allowed_sources(status), status.value])
            ),
        )
        .values({name: bindparam(f"v_{name}") for name in names})
    )


async def _update_executions(
    session: AsyncSession, changes: list[tuple[str, ExecutionUpdate]]
) -> None:
    """Apply the execution changes of a batch: one executemany per kind of change when each
    execution changes once (the usual batch: many runs ending), else one at a time, in
    order."""
    if len({execution_id for execution_id, _ in changes}) < len(changes):
        for execution_id, change in changes:
            statement, params = _execution_change(execution_id, change)
            if await statement.run(session, [params]) == 0:
                logger.error(
                    "execution %s: status %s refused by the state machine",
                    execution_id,
                    change.status,
                )
        return
    grouped: dict[DriverStatement, list[dict[str, Any]]] = {}
    for execution_id, change in changes:
        statement, params = _execution_change(execution_id, change)
        grouped.setdefault(statement, []).append(params)
    for statement, rows in grouped.items():
        changed = await statement.run(session, rows)
        if 0 <= changed < len(rows):
            logger.error(
                "%d of %d execution status changes refused by the state machine: %s",
                len(rows) - changed,
                len(rows),
                ", ".join(sorted(row["v_execution_id"] for row in rows)),
            )


def _execution_change(
    execution_id: str, change: ExecutionUpdate
) -> tuple[DriverStatement, dict[str, Any]]:
    values: dict[str, Any] = {"status": change.status.value}
    if change.status.is_terminal or change.status is ExecutionStatus.WAITING:
        # The lease ends with the run (a waiting execution is resumed by a new claim).
        values["lease_owner"] = None
        values["lease_expires_at"] = None
    if change.status is ExecutionStatus.WAITING:
        values["resume_at"] = change.resume_at
        values["parked"] = change.parked
    if change.started_at is not None:
        values["started_at"] = change.started_at
    if change.finished_at is not None:
        values["finished_at"] = change.finished_at
    if change.error is not None:
        values["error"] = change.error.to_json()
    if change.saved_data is not SaveData.ALL:
        values["saved_data"] = change.saved_data.value
    statement = _execution_update(change.status, tuple(values))
    params = {f"v_{name}": value for name, value in values.items()}
    return statement, {"v_execution_id": execution_id, **params}
