"""Schedule arithmetic: cron in a timezone, daylight saving (the stated rule), intervals,
missed ticks, and parameters that cannot run."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.schedule import Schedule, ScheduleError, schedule_problems


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def ticks(schedule: Schedule, start: str, count: int) -> list[str]:
    moment, out = at(start), []
    for _ in range(count):
        moment = schedule.next_after(moment)
        out.append(moment.strftime("%Y-%m-%d %H:%M"))
    return out


def test_cron_runs_in_its_timezone_across_seasons() -> None:
    nine = Schedule.from_parameters({"cron": "0 9 * * *", "timezone": "Europe/Paris"})
    assert ticks(nine, "2026-01-10 12:00", 1) == ["2026-01-11 08:00"]  # CET, UTC+1
    assert ticks(nine, "2026-07-10 12:00", 1) == ["2026-07-11 07:00"]  # CEST, UTC+2


def test_a_skipped_local_time_runs_right_after_the_jump() -> None:
    night = Schedule.from_parameters({"cron": "30 2 * * *", "timezone": "Europe/Paris"})
    # 2026-03-29: clocks go from 02:00 to 03:00; 02:30 does not exist and runs at 03:00.
    assert ticks(night, "2026-03-28 12:00", 2) == ["2026-03-29 01:00", "2026-03-30 00:30"]


def test_a_repeated_local_time_runs_once() -> None:
    night = Schedule.from_parameters({"cron": "30 2 * * *", "timezone": "Europe/Paris"})
    # 2026-10-25: clocks go back from 03:00 to 02:00; 02:30 happens twice and runs once.
    assert ticks(night, "2026-10-24 12:00", 2) == ["2026-10-25 00:30", "2026-10-26 01:30"]
    # Every 30 minutes keeps running every 30 real minutes through the change.
    often = Schedule.from_parameters({"cron": "*/30 * * * *", "timezone": "Europe/Paris"})
    assert [t[-5:] for t in ticks(often, "2026-10-24 23:45", 6)] == [
        "00:00",
        "00:30",
        "01:00",
        "01:30",
        "02:00",
        "02:30",
    ]


def test_intervals_and_the_latest_missed_tick() -> None:
    every = Schedule.from_parameters({"mode": "interval", "intervalSeconds": 90})
    assert ticks(every, "2026-01-01 00:00", 2) == ["2026-01-01 00:01", "2026-01-01 00:03"]
    hourly = Schedule.from_parameters({"cron": "0 * * * *"})
    latest = hourly.latest_at_or_before(at("2026-01-01 05:30"), at("2026-01-01 01:00"))
    assert latest == at("2026-01-01 05:00")


@pytest.mark.parametrize(
    ("parameters", "parameter"),
    [
        ({"cron": "every day"}, "cron"),
        ({"cron": ""}, "cron"),
        ({"cron": "* * * * * *"}, "cron"),  # a seconds field: would fire every second
        ({"cron": "0 9 * * 1-5 2027"}, "cron"),  # a years field
        ({"cron": "0 9 * *"}, "cron"),
        ({"cron": "0 0 31 2 *"}, "cron"),  # parses, never fires
        ({"cron": "@reboot"}, "cron"),
        ({"cron": 17}, "cron"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"cron": "0 9 * * *", "timezone": "../../etc/passwd"}, "timezone"),
        ({"mode": "interval", "intervalSeconds": 0.5}, "intervalSeconds"),
        ({"mode": "interval", "intervalSeconds": True}, "intervalSeconds"),
        ({"mode": "interval", "intervalSeconds": 1e15}, "intervalSeconds"),
        ({"mode": "interval", "intervalSeconds": float("inf")}, "intervalSeconds"),
        ({"mode": "interval"}, "intervalSeconds"),
        ({"mode": "hourly"}, "mode"),
        ({"cron": "0 9 * * *", "missed": "later"}, "missed"),
    ],
)
def test_schedules_that_cannot_run_name_the_parameter(
    parameters: dict[str, object], parameter: str
) -> None:
    with pytest.raises(ScheduleError) as failure:
        Schedule.from_parameters(parameters)
    assert [name for name, _ in failure.value.problems] == [parameter]


def test_every_problem_of_a_schedule_is_reported_at_once() -> None:
    problems = schedule_problems({"cron": "* * * * * *", "timezone": "Nowhere", "missed": "x"})
    assert sorted(name for name, _ in problems) == ["cron", "missed", "timezone"]
    cron = dict(problems)["cron"]
    assert "five fields" in cron and "not 6" in cron


@pytest.mark.parametrize("cron", ["0 9 * * 1-5", "*/15 * * * *", "0 0 29 2 *", "@daily", "@HOURLY"])
def test_five_field_expressions_and_macros_run(cron: str) -> None:
    schedule = Schedule.from_parameters({"cron": cron})
    assert schedule.next_after(datetime(2026, 1, 1, tzinfo=UTC)) > datetime(2026, 1, 1, tzinfo=UTC)
