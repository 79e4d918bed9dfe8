"""Schedule triggers: registered on activation, fired exactly once per tick even when
schedulers race, missed ticks skipped or run once, and a live scheduler that starts and
stops with activation (no restart)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlmodel import select

from storage import schedules
from storage.db import Database
from storage.models import Execution, ScheduleRow, ScheduleTick, WorkflowVersion
from storage.recorder import GroupCommitWriter
from storage.types import utcnow
from tests.api.test_executions import create
from tests.api.test_webhooks import ACTIVATE, PUBLISH
from tests.conftest import Caller
from tests.factories import edge, node
from tests.live import serve
from tests.polling import until


async def scheduled(caller: Caller, parameters: dict[str, Any]) -> str:
    workflow_id = await create(
        caller,
        [node("tick", "Tick", "schedule", parameters=parameters), node("n", "N")],
        [edge("tick", "n")],
    )
    assert (await caller.gql(PUBLISH, {"id": workflow_id, "v": 1}))["publishWorkflow"][
        "__typename"
    ] == "Workflow"
    result = (await caller.gql(ACTIVATE, {"id": workflow_id, "active": True}))["setWorkflowActive"]
    assert result["__typename"] == "Workflow", result
    return workflow_id


async def schedule_row(database: Database, workflow_id: str) -> ScheduleRow | None:
    async with database.session() as session:
        return await session.get(ScheduleRow, (workflow_id, "tick"))


async def test_a_due_tick_fires_once_even_when_schedulers_race(
    alice: Caller, database: Database
) -> None:
    workflow_id = await scheduled(alice, {"cron": "*/5 * * * *"})
    row = await schedule_row(database, workflow_id)
    assert row is not None and row.next_at > utcnow()
    due = row.next_at
    created = await asyncio.gather(
        *(schedules.fire_due(database, GroupCommitWriter(database), due) for _ in range(4))
    )
    fired = [execution for batch in created for execution in batch]
    assert len(fired) == 1
    assert fired[0].mode == "schedule"
    assert await schedules.fire_due(database, GroupCommitWriter(database), due) == []
    async with database.session() as session:
        ticks = (await session.exec(select(ScheduleTick))).all()
    assert [(tick.scheduled_at, tick.execution_id) for tick in ticks] == [(due, fired[0].id)]
    after = await schedule_row(database, workflow_id)
    assert after is not None and after.next_at == due + timedelta(minutes=5)


async def test_missed_ticks_are_skipped_or_run_once(alice: Caller, database: Database) -> None:
    skipping = await scheduled(alice, {"cron": "* * * * *", "missed": "skip"})
    catching_up = await scheduled(alice, {"cron": "* * * * *", "missed": "run_once"})
    # The processes were down for an hour.
    later = utcnow() + timedelta(hours=1)
    fired = await schedules.fire_due(database, GroupCommitWriter(database), later)
    assert [execution.workflow_id for execution in fired] == [catching_up]
    for workflow_id in (skipping, catching_up):
        row = await schedule_row(database, workflow_id)
        assert row is not None and later < row.next_at <= later + timedelta(minutes=1)


async def test_deactivating_stops_the_schedule(alice: Caller, database: Database) -> None:
    workflow_id = await scheduled(alice, {"mode": "interval", "intervalSeconds": 60})
    await alice.gql(ACTIVATE, {"id": workflow_id, "active": False})
    assert await schedule_row(database, workflow_id) is None
    assert (
        await schedules.fire_due(
            database, GroupCommitWriter(database), utcnow() + timedelta(days=1)
        )
        == []
    )


NODE_ISSUES = """
query($id: ID!) { workflow(id: $id) { nodes { id issues { code field message } } } }
"""


async def test_schedule_problems_are_node_issues_on_save_all_at_once(alice: Caller) -> None:
    workflow_id = await create(
        alice,
        [
            node(
                "tick",
                "Tick",
                "schedule",
                parameters={"cron": "* * * * * *", "timezone": "Mars/Olympus"},
            )
        ],
        [],
    )
    data = await alice.gql(NODE_ISSUES, {"id": workflow_id})
    (tick,) = data["workflow"]["nodes"]
    issues = {issue["field"]: issue for issue in tick["issues"]}
    assert set(issues) == {"parameters.cron", "parameters.timezone"}
    assert {issue["code"] for issue in issues.values()} == {"INVALID_SCHEDULE"}
    assert "five fields" in issues["parameters.cron"]["message"]
    assert "Mars/Olympus" in issues["parameters.timezone"]["message"]
    # A draft with issues cannot be published, so it never reaches activation.
    published = (await alice.gql(PUBLISH, {"id": workflow_id, "v": 1}))["publishWorkflow"]
    assert published["__typename"] == "ValidationError"
    assert {problem["field"] for problem in published["problems"]} == set(issues)


async def test_a_schedule_that_cannot_run_is_refused_at_activation(
    alice: Caller, database: Database, db_state: Any
) -> None:
    workflow_id = await create(
        alice, [node("tick", "Tick", "schedule", parameters={"cron": "0 9 * * *"})], []
    )
    assert (await alice.gql(PUBLISH, {"id": workflow_id, "v": 1}))["publishWorkflow"][
        "__typename"
    ] == "Workflow"
    # A version published before these checks existed (an older Loom took six fields).
    async with database.transaction() as session:
        version = (
            await session.exec(
                select(WorkflowVersion).where(WorkflowVersion.workflow_id == workflow_id)
            )
        ).one()
        bad = {"cron": "* * * * * *", "timezone": "Nowhere/Else"}
        version.nodes = [{**version.nodes[0], "parameters": bad}]
        session.add(version)
    before = await db_state()
    result = (await alice.gql(ACTIVATE, {"id": workflow_id, "active": True}))["setWorkflowActive"]
    assert result["__typename"] == "ValidationError", result
    found = {(p["code"], p["nodeId"], p["field"]) for p in result["problems"]}
    assert found == {
        ("INVALID_SCHEDULE", "tick", "parameters.cron"),
        ("INVALID_SCHEDULE", "tick", "parameters.timezone"),
    }
    assert await db_state() == before


async def test_a_stored_six_field_schedule_deactivates_its_workflow_not_fired_every_second(
    alice: Caller, database: Database
) -> None:
    workflow_id = await scheduled(alice, {"cron": "*/5 * * * *"})
    async with database.transaction() as session:
        row = await session.get(ScheduleRow, (workflow_id, "tick"))
        assert row is not None
        # As an older Loom registered it: a seconds field.
        row.spec = {**row.spec, "cron": "* * * * * *"}
        session.add(row)
        due = row.next_at
    assert await schedules.fire_due(database, GroupCommitWriter(database), due) == []
    assert await schedule_row(database, workflow_id) is None
    async with database.session() as session:
        assert (await session.exec(select(ScheduleTick))).all() == []
    # It no longer shows as active; activating it again says why it cannot be.
    shown = await alice.gql("query($id: ID!) { workflow(id: $id) { active } }", {"id": workflow_id})
    assert shown["workflow"]["active"] is False


async def test_the_running_server_fires_schedules_from_activation_on(
    app: Any, alice: Caller, database: Database
) -> None:
    async with serve(app):
        workflow_id = await scheduled(alice, {"mode": "interval", "intervalSeconds": 1})

        async def runs(of_workflow_id: str = workflow_id) -> list[Execution]:
            async with database.session() as session:
                query = select(Execution).where(Execution.workflow_id == of_workflow_id)
                return list((await session.exec(query)).all())

        for _ in range(100):
            if len(await runs()) >= 2:
                break
            await asyncio.sleep(0.1)
        assert len(await runs()) >= 2
        await alice.gql(ACTIVATE, {"id": workflow_id, "active": False})
        stopped = len(await runs())
        # A probe schedule activated now fires in a scheduler pass that began after the
        # deactivation: that pass, and every later one, left the deactivated schedule alone.
        probe_id = await scheduled(alice, {"mode": "interval", "intervalSeconds": 1})
        await until(lambda: runs(probe_id), within_s=15, what="the probe's first run")
        assert len(await runs()) == stopped
