"""Time-driven work, in the daemon's (possibly scaled) time.

APScheduler 3.11's AsyncIOScheduler runs on the daemon's event loop and decides *when*; the
daemon's own task group does the work. Each job only drops a wake-up ("poll", "check", "report")
into a small queue; the server's scheduler task takes it and applies the engine event under the
core lock, so cancellation and shutdown stay structured (a job never runs outside the task group
and never writes to a closed store).

Scaling: every trigger is a ``ScaledTrigger`` around an ordinary APScheduler trigger that is
evaluated in *simulated* time (``pixels_daemon/clock.py``): APScheduler asks it for the next fire
time in real time, it converts ``now`` to simulated time, asks the inner trigger, and converts the
answer back. So ``CronTrigger(day_of_week="fri", hour=17, timezone=tz)`` fires on simulated Fridays
at 17:00 local time, DST included, whatever the scale.

Misfires and coalescing: jobs coalesce (a loop that was blocked runs a job once, not once per
missed period) and have no misfire grace limit (a late wake-up still runs: everything they do is
idempotent and judged against the clock when it runs). A report missed while the daemon was *down*
is not APScheduler's business (its in-memory job store forgets everything on exit): at start the
server asks ``missed_report`` whether a Friday passed since the last report in the event log, and
writes that one report once, not one per missed week.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from pixels_daemon.clock import ScaledClock
from pixels_daemon.reports import week_of

UTC = dt.UTC

#: The spec's cadence: "status updates from each orchestrator every 4 hours".
DEFAULT_POLL_INTERVAL_S = 4 * 3600.0
#: "A few minutes": the time-based rules' thresholds are hours (24 h stall, 24/48 h blockers),
#: so 5 minutes of resolution is plenty and idle costs nothing.
DEFAULT_CHECK_INTERVAL_S = 300.0
#: The spec's "weekly summary every Friday", at the end of the working day.
DEFAULT_REPORT_AT = "fri 17:00"
DEFAULT_REPORT_TZ = "UTC"
#: At high time scales a short simulated interval would be a busy loop in real time (5 minutes
#: at scale 60000 is 5 ms): no periodic job fires more often than this many real seconds.
MIN_REAL_INTERVAL_S = 0.1

UTC_ZONE = ZoneInfo(DEFAULT_REPORT_TZ)

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ScheduleError(ValueError):
    """A schedule setting that cannot be used; the message says which and what is accepted."""


@dataclass(frozen=True)
class ReportAt:
    """When the weekly report is due: a day of the week and a local time."""

    day: str  # mon..sun
    hour: int
    minute: int

    def __str__(self) -> str:
        return f"{self.day} {self.hour:02d}:{self.minute:02d}"


def parse_report_at(text: str) -> ReportAt:
    """``"fri 17:00"`` -> ReportAt; a clear error for anything else."""
    parts = text.strip().lower().split()
    if len(parts) == 2 and parts[0][:3] in _DAYS and ":" in parts[1]:
        hh, _, mm = parts[1].partition(":")
        if hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60:
            return ReportAt(parts[0][:3], int(hh), int(mm))
    raise ScheduleError(
        f"report time {text!r} is not DAY HH:MM; use e.g. 'fri 17:00' (days: {', '.join(_DAYS)})"
    )


def parse_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin or UTC"
        ) from None


@dataclass(frozen=True)
class Schedule:
    """The daemon's rhythm, in simulated seconds (= real seconds at scale 1)."""

    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    check_interval_s: float = DEFAULT_CHECK_INTERVAL_S
    report_at: ReportAt = ReportAt("fri", 17, 0)
    report_tz: ZoneInfo = UTC_ZONE

    def __post_init__(self) -> None:
        for name in ("poll_interval_s", "check_interval_s"):
            if not getattr(self, name) > 0:
                raise ScheduleError(f"{name} must be a positive number of seconds")

    def report_trigger(self) -> CronTrigger:
        at = self.report_at
        return CronTrigger(
            day_of_week=at.day, hour=at.hour, minute=at.minute, second=0, timezone=self.report_tz
        )


DEFAULT_SCHEDULE = Schedule()


def _to_dt(t: float) -> dt.datetime:
    # Whole milliseconds: sim -> real -> sim round trips lose ~1e-7 s, and a cron trigger asked
    # with a previous fire time a hair *before* 17:00:00 would fire at that same 17:00 again.
    return dt.datetime.fromtimestamp(round(t, 3), tz=UTC)


class ScaledTrigger(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 ships no type hints
    """An APScheduler trigger evaluated in the clock's simulated time, fired in real time.

    The fire times handed to APScheduler are datetimes (microseconds): at scale N, converting one
    back is off by up to N/2 microseconds of simulated time, enough for a cron asked "after
    16:59:59.9" to fire the same Friday 17:00 again, and again. So the exact simulated time of
    recent fires is remembered and used when APScheduler passes one back as
    ``previous_fire_time`` (it does, more than once per run); an unknown one is converted with
    the rounding error added, so it never lands before the fire it stands for.
    """

    _REMEMBERED = 8

    def __init__(self, inner: BaseTrigger, clock: ScaledClock) -> None:
        self.inner = inner
        self.clock = clock
        self._fired: dict[dt.datetime, dt.datetime] = {}  # real fire time -> simulated

    def get_next_fire_time(
        self, previous_fire_time: dt.datetime | None, now: dt.datetime
    ) -> dt.datetime | None:
        clock = self.clock
        sim_now = _to_dt(clock.to_sim(now.timestamp()))
        sim_prev = None
        if previous_fire_time is not None:
            sim_prev = self._fired.get(previous_fire_time)
            if sim_prev is None:
                error = 1e-6 * clock.scale  # a microsecond of real time, in clock time
                sim_prev = _to_dt(clock.to_sim(previous_fire_time.timestamp()) + error)
            # "now" converted from the same truncated instant can fall just before the previous
            # fire: never ask from before it.
            sim_now = max(sim_now, sim_prev)
        nxt = self.inner.get_next_fire_time(sim_prev, sim_now)
        if nxt is None:
            return None
        real = dt.datetime.fromtimestamp(clock.to_real(nxt.timestamp()), tz=UTC)
        self._fired[real] = nxt
        if len(self._fired) > self._REMEMBERED:
            del self._fired[next(iter(self._fired))]  # the oldest
        return real

    def __str__(self) -> str:
        return f"scaled({self.inner}, x{self.clock.scale:g})"


def interval_trigger(seconds: float, clock: ScaledClock) -> ScaledTrigger:
    """Every ``seconds`` of simulated time, but never more often than MIN_REAL_INTERVAL_S real."""
    seconds = max(seconds, MIN_REAL_INTERVAL_S * clock.scale)
    inner = IntervalTrigger(seconds=seconds, start_date=_to_dt(clock.now()), timezone=UTC)
    return ScaledTrigger(inner, clock)


def fire_times(
    trigger: BaseTrigger, after: float, until: float, limit: int = 10_000
) -> list[float]:
    """The fire times of ``trigger`` in (after, until], in order (simulated time; pure)."""
    out: list[float] = []
    prev: dt.datetime | None = None
    now = _to_dt(after + 0.001)
    while len(out) < limit:
        nxt = trigger.get_next_fire_time(prev, now)
        if nxt is None or nxt.timestamp() > until:
            break
        out.append(nxt.timestamp())
        prev = nxt
        now = nxt
    return out


def last_due(schedule: Schedule, now: float) -> float | None:
    """The latest scheduled report time at or before ``now`` (within a week), or None.

    What a report written now stands for: the scheduler wakes the loop a little after the fire
    time (more, in simulated time, at high time scales), and the report belongs to the fire time.
    """
    # One report a week: 8 days back always holds the latest scheduled time.
    times = fire_times(schedule.report_trigger(), now - 8 * 86400.0, now)
    return times[-1] if times else None


def missed_report(
    schedule: Schedule, reports: dict[int, float], plan_start: float | None, now: float
) -> int | None:
    """The week whose scheduled report passed while nobody wrote it, or None.

    Only the latest such week: a daemon down for three Fridays writes one report when it comes
    back (the latest state describes the latest week; three copies of it would say nothing more).
    """
    if plan_start is None:
        return None
    since = max([plan_start, *reports.values()])
    # One report a week: looking back 8 days finds the latest scheduled time, whatever the gap.
    times = fire_times(schedule.report_trigger(), max(since, now - 8 * 86400.0), now)
    if not times:
        return None
    due = times[-1]
    week = week_of(due, plan_start)
    written = reports.get(week)
    if written is not None and written >= due:
        return None
    return week
