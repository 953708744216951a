"""Cron schedules for CronJobs: parsing, next times and missed runs (pure, no I/O).

Mirrors ``pkg/controller/cronjob/utils.go`` on top of robfig/cron's
``ParseStandard``: five fields or a macro (``@hourly`` …), evaluated in
``spec.timeZone`` (default: the controller's zone, UTC here), plus robfig's
``@every <duration>`` whose next time is simply ``t + d`` (truncated to the
second).  ``croniter`` does the five-field work; like robfig its ``next`` is
strictly after the start and day-of-month/day-of-week are OR-ed.

Missed runs (``mostRecentScheduleTime``): starting from the later of the last
schedule time (or creation) and ``now - startingDeadlineSeconds``, count the
schedule times up to ``now``.  Only the most recent one is run; more than 100
is reported (``TooManyMissedTimes``) but still runs the most recent, as
upstream does since 1.20.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

MAX_MISSED = 100

_EVERY = re.compile(r"^@every\s+(.+)$")
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


class ScheduleError(ValueError):
    """The schedule or time zone cannot be parsed."""


def parse_go_duration(text: str) -> timedelta:
    """Go's ``time.ParseDuration`` for positive values (``1h30m``, ``90s``)."""
    text = text.strip()
    pos, total = 0, 0.0
    for m in _GO_DURATION.finditer(text):
        if m.start() != pos:
            raise ScheduleError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ScheduleError(f"invalid duration {text!r}")
    return timedelta(seconds=total)


@dataclass(frozen=True)
class Schedule:
    """A parsed CronJob schedule in a time zone."""

    expr: str
    tz: ZoneInfo | None = None
    every: timedelta | None = None

    @classmethod
    def parse(cls, schedule: str, time_zone: str | None = None) -> Schedule:
        try:
            tz = ZoneInfo(time_zone) if time_zone else None
        except Exception as exc:  # noqa: BLE001 - any lookup failure is "unknown zone"
            raise ScheduleError(f"unknown time zone {time_zone}") from exc
        s = (schedule or "").strip()
        m = _EVERY.match(s)
        if m:
            d = parse_go_duration(m.group(1))
            if d < timedelta(seconds=1):
                d = timedelta(seconds=1)  # robfig: "delays of less than a second are not supported"
            return cls(s, tz, d)
        if s == "@midnight":
            s = "@daily"
        if not s.startswith("@") and len(s.split()) != 5:
            raise ScheduleError(f"unparseable schedule: {schedule}")
        if not croniter.is_valid(s):
            raise ScheduleError(f"unparseable schedule: {schedule}")
        return cls(s, tz)

    def next(self, t: datetime) -> datetime:
        """The first schedule time strictly after ``t`` (as robfig ``Schedule.Next``)."""
        if self.every is not None:
            base = t.replace(microsecond=0)
            return (base + self.every).astimezone(UTC)
        local = t.astimezone(self.tz or UTC)
        nxt: datetime = croniter(self.expr, local).get_next(datetime)
        return nxt.astimezone(UTC)


@dataclass(frozen=True)
class Missed:
    """Result of :func:`most_recent_schedule`."""

    earliest: datetime
    most_recent: datetime | None
    count: int


def most_recent_schedule(
    schedule: Schedule,
    *,
    now: datetime,
    created: datetime,
    last_schedule: datetime | None,
    starting_deadline: int | None,
) -> Missed:
    """Mirrors ``mostRecentScheduleTime`` (with startingDeadlineSeconds applied)."""
    earliest = last_schedule or created
    if starting_deadline is not None:
        deadline = now - timedelta(seconds=starting_deadline)
        if deadline > earliest:
            earliest = deadline
    t1 = schedule.next(earliest)
    if now < t1:
        return Missed(earliest, None, 0)
    t2 = schedule.next(t1)
    if now < t2:
        return Missed(earliest, t1, 1)
    # Walk the times (bounded) instead of upstream's interval estimate, which is
    # wrong for irregular schedules such as "0 0 1 * *"; beyond the bound, estimate.
    count, t = 1, t1
    while count <= MAX_MISSED + 1:
        nxt = schedule.next(t)
        if nxt > now:
            return Missed(earliest, t, count)
        t, count = nxt, count + 1
    step = (t2 - t1).total_seconds()
    extra = int((now - t).total_seconds() // step) if step > 0 else 0
    t = t + timedelta(seconds=extra * step)
    while True:
        nxt = schedule.next(t)
        if nxt > now:
            break
        t = nxt
        extra += 1
    return Missed(earliest, t, count + extra)


def job_name(cronjob_name: str, scheduled: datetime) -> str:
    """``<cronjob>-<minutes since epoch>`` (mirrors ``getJobName``)."""
    return f"{cronjob_name}-{int(scheduled.timestamp()) // 60}"


def format_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
