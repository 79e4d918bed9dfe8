"""When a schedule trigger fires: cron expressions in a timezone (croniter), or intervals.

Daylight saving, stated: cron times are read in the schedule's timezone. A local time that a
jump forward skips runs at the first instant after the jump (02:30 on the night clocks go
from 02:00 to 03:00 runs at 03:00); a local time that occurs twice when clocks go back runs
once, at its first occurrence. Intervals count real time (UTC) and ignore the clock change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# croniter is imported where a cron expression is read: a process without schedules never
# loads it (nor its dateutil parts).
from engine.errors import EngineError

MIN_INTERVAL_S = 1.0
# A year and a day: a longer interval is not a schedule (and past about 3e11 s the next
# time would not fit a datetime).
MAX_INTERVAL_S = 366 * 24 * 3600.0
MISSED_POLICIES = ("skip", "run_once")
MODES = ("cron", "interval")
# Five fields (minute hour day-of-month month day-of-week), or one of these. croniter also
# reads a sixth field as seconds and a seventh as years: a schedule written for another tool
# would then fire every second, so those are refused.
CRON_FIELDS = 5
CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
CRON_EXAMPLE = "'0 9 * * 1-5' (09:00 on weekdays)"
# Any date works for asking whether an expression ever fires: every calendar pattern repeats
# within 28 years, and croniter gives up after searching far less (a 31st of February).
_PROBE = datetime(2026, 1, 1)


class ScheduleError(EngineError, ValueError):
    """A schedule that cannot run: every problem, each naming its parameter."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{parameter}: {message}" for parameter, message in problems))
        self.problems = problems


def schedule_problems(parameters: dict[str, Any]) -> list[tuple[str, str]]:
    """Every reason these trigger parameters cannot run, as (parameter, message); none for a
    schedule that can. The editor shows them on save, activation refuses them."""
    problems: list[tuple[str, str]] = []
    timezone = parameters.get("timezone") or "UTC"
    try:
        ZoneInfo(str(timezone))
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(
            (
                "timezone",
                f"unknown timezone {str(timezone)[:64]!r}; use an IANA name such as "
                "Europe/Paris or UTC",
            )
        )
    missed = parameters.get("missed") or "skip"
    if missed not in MISSED_POLICIES:
        problems.append(("missed", f"must be one of {', '.join(MISSED_POLICIES)}"))
    mode = parameters.get("mode") or "cron"
    if mode not in MODES:
        problems.append(("mode", f"must be one of {', '.join(MODES)}"))
    elif mode == "interval":
        interval = parameters.get("intervalSeconds")
        if (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not MIN_INTERVAL_S <= interval <= MAX_INTERVAL_S
        ):
            problems.append(
                (
                    "intervalSeconds",
                    f"must be a number of seconds from {MIN_INTERVAL_S:g} to "
                    f"{MAX_INTERVAL_S:.0f} (366 days)",
                )
            )
    else:
        problem = cron_problem(parameters.get("cron"))
        if problem is not None:
            problems.append(("cron", problem))
    return problems


def cron_problem(cron: object) -> str | None:
    """Why `cron` is not a five-field cron expression that fires, or None."""
    text = cron.strip() if isinstance(cron, str) else ""
    if not text:
        return f"a cron expression is required, such as {CRON_EXAMPLE}"
    fields = text.split()
    if text.startswith("@"):
        if text.lower() not in CRON_MACROS:
            return f"{text[:40]!r} is not one of {', '.join(CRON_MACROS)}"
        return None
    if len(fields) != CRON_FIELDS:
        return (
            f"must have five fields (minute hour day-of-month month day-of-week), not "
            f"{len(fields)}; for example {CRON_EXAMPLE}"
        )
    from croniter import CroniterBadDateError, croniter

    if not croniter.is_valid(text):
        return f"{text[:200]!r} is not a valid cron expression; for example {CRON_EXAMPLE}"
    try:
        croniter(text, _PROBE).get_next(datetime)
    except CroniterBadDateError:
        return f"{text[:200]!r} never fires (no date matches it)"
    return None


def _wall(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class Schedule:
    cron: str | None
    timezone: str
    interval_s: float | None
    missed: str

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any]) -> Schedule:
        """The schedule of a trigger's parameters; raises `ScheduleError` if invalid."""
        problems = schedule_problems(parameters)
        if problems:
            raise ScheduleError(problems)
        timezone = str(parameters.get("timezone") or "UTC")
        missed = str(parameters.get("missed") or "skip")
        if (parameters.get("mode") or "cron") == "interval":
            return cls(None, timezone, float(parameters["intervalSeconds"]), missed)
        return cls(str(parameters["cron"]).strip(), timezone, None, missed)

    def to_json(self) -> dict[str, Any]:
        return {
            "cron": self.cron,
            "timezone": self.timezone,
            "intervalSeconds": self.interval_s,
            "missed": self.missed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Schedule:
        return cls(data.get("cron"), data["timezone"], data.get("intervalSeconds"), data["missed"])

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment` (UTC in, UTC out)."""
        if self.interval_s is not None:
            return moment + timedelta(seconds=self.interval_s)
        assert self.cron is not None
        from croniter import croniter

        zone = ZoneInfo(self.timezone)
        local = moment.astimezone(zone)
        ticks = croniter(self.cron, local)
        tick: datetime = ticks.get_next(datetime)
        # The same wall-clock time again, an hour later (clocks went back): once is enough.
        # (Aware datetimes of one zone compare by wall clock: compare in UTC.)
        if _wall(tick) == _wall(local) and tick.astimezone(UTC) != local.astimezone(UTC):
            tick = ticks.get_next(datetime)
        return tick.astimezone(UTC)

    def latest_at_or_before(self, moment: datetime, since: datetime) -> datetime:
        """The last tick at or before `moment`, no earlier than `since` (run_once)."""
        tick = since
        while True:
            following = self.next_after(tick)
            if following > moment:
                return tick
            tick = following
