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

from croniter import croniter

MIN_INTERVAL_S = 1.0
MISSED_POLICIES = ("skip", "run_once")


class ScheduleError(ValueError):
    """A schedule that cannot run; the message names the parameter."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


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
        timezone = str(parameters.get("timezone") or "UTC")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ScheduleError("timezone", f"unknown timezone {timezone!r}") from exc
        missed = str(parameters.get("missed") or "skip")
        if missed not in MISSED_POLICIES:
            raise ScheduleError("missed", f"must be one of {', '.join(MISSED_POLICIES)}")
        if (parameters.get("mode") or "cron") == "interval":
            interval = parameters.get("intervalSeconds")
            if not isinstance(interval, int | float) or interval < MIN_INTERVAL_S:
                raise ScheduleError(
                    "intervalSeconds", f"must be a number of seconds, {MIN_INTERVAL_S:g} or more"
                )
            return cls(None, timezone, float(interval), missed)
        cron = str(parameters.get("cron") or "").strip()
        if not croniter.is_valid(cron):
            raise ScheduleError("cron", "must be a cron expression such as '0 9 * * 1-5'")
        return cls(cron, timezone, None, missed)

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
