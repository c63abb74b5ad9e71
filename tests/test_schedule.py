"""The schedule (pixels_daemon/schedule.py): APScheduler triggers evaluated on the scaled clock,
the Friday report's cron across DST, the downtime catch-up rule, and the settings' errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from pixels_daemon.clock import ScaledClock
from pixels_daemon.schedule import (
    MIN_REAL_INTERVAL_S,
    ScaledTrigger,
    Schedule,
    ScheduleError,
    fire_times,
    interval_trigger,
    last_due,
    missed_report,
    parse_report_at,
    parse_zone,
)

BERLIN = ZoneInfo("Europe/Berlin")
HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY


def at(text: str, tz: ZoneInfo = BERLIN) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def local(t: float, tz: ZoneInfo = BERLIN) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, tz)


class Real:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


BERLIN_FRIDAYS = Schedule(report_at=parse_report_at("fri 17:00"), report_tz=BERLIN)


def scaled_fire_times(trigger: ScaledTrigger, clock: ScaledClock, n: int) -> list[float]:
    """Ask the trigger as APScheduler does (real datetimes), return the fires in clock time."""
    out = []
    prev = None
    now = dt.datetime.fromtimestamp(clock._real(), dt.UTC)
    for _ in range(n):
        nxt = trigger.get_next_fire_time(prev, now)
        out.append(clock.to_sim(nxt.timestamp()))
        prev = now = nxt
    return out


def test_polls_fire_every_four_hours_of_scaled_time() -> None:
    """At scale 10000 the 4-hour poll fires every 1.44 real seconds, 4 clock hours apart."""
    clock = ScaledClock(10_000, sim_origin=at("2026-03-02T09:00"), real=Real(1000.0))
    times = scaled_fire_times(interval_trigger(4 * HOUR, clock), clock, 5)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == pytest.approx([4 * HOUR] * 4, abs=0.01)
    assert clock.to_real(times[1]) - clock.to_real(times[0]) == pytest.approx(1.44, abs=1e-3)


def test_short_intervals_are_floored_in_real_time() -> None:
    """A 5-minute check at scale 60000 would fire every 5 ms: it is held to MIN_REAL_INTERVAL_S."""
    clock = ScaledClock(60_000, real=Real(0.0))
    times = scaled_fire_times(interval_trigger(300, clock), clock, 3)
    assert times[1] - times[0] == pytest.approx(MIN_REAL_INTERVAL_S * 60_000)


def test_the_report_fires_on_fridays_at_17_local_across_a_dst_change() -> None:
    """Berlin moves to CEST on 2026-03-29: the report stays at 17:00 local, so 7 days minus an
    hour apart in absolute time."""
    clock = ScaledClock(50_000, sim_origin=at("2026-03-16T09:00"), real=Real(0.0))
    trigger = ScaledTrigger(BERLIN_FRIDAYS.report_trigger(), clock)
    times = scaled_fire_times(trigger, clock, 3)
    stamps = [local(t).strftime("%a %Y-%m-%d %H:%M %Z") for t in times]
    assert stamps == [
        "Fri 2026-03-20 17:00 CET",
        "Fri 2026-03-27 17:00 CET",
        "Fri 2026-04-03 17:00 CEST",
    ]
    assert times[2] - times[1] == WEEK - HOUR


def test_scaled_round_trips_never_fire_the_same_friday_twice() -> None:
    """Real datetimes keep microseconds: at scale 123456 a round trip loses 0.1 s of clock time;
    the cron must still move on to the next Friday each time."""
    clock = ScaledClock(123_456.789, sim_origin=at("2026-01-05T09:00"), real=Real(1.7e9))
    trigger = ScaledTrigger(BERLIN_FRIDAYS.report_trigger(), clock)
    times = scaled_fire_times(trigger, clock, 12)
    assert len({round(t) for t in times}) == 12
    assert all(local(round(t)).strftime("%a %H:%M") == "Fri 17:00" for t in times)


def test_fire_times_lists_a_range_in_order() -> None:
    """fire_times (after, until]: the Fridays of a month."""
    times = fire_times(
        BERLIN_FRIDAYS.report_trigger(), at("2026-05-01T17:00"), at("2026-05-31T00:00")
    )
    assert [local(t).day for t in times] == [8, 15, 22, 29]


def test_a_report_late_by_minutes_stands_for_the_friday_it_was_due() -> None:
    """Woken at 17:04 (a loaded loop at a high time scale): the report is for 17:00 exactly."""
    assert last_due(BERLIN_FRIDAYS, at("2026-03-27T17:04")) == at("2026-03-27T17:00")
    assert last_due(BERLIN_FRIDAYS, at("2026-03-27T16:59")) == at("2026-03-20T17:00")


def test_a_report_missed_during_downtime_is_due_once() -> None:
    """Down across three Fridays: only the latest week's report is due, once."""
    start = at("2026-01-05T09:00")  # a Monday
    reports = {1: at("2026-01-09T17:00")}
    now = at("2026-02-01T12:00")  # Sunday after the fourth Friday
    assert missed_report(BERLIN_FRIDAYS, reports, start, now) == 4
    reports[4] = now
    assert missed_report(BERLIN_FRIDAYS, reports, start, now + HOUR) is None


def test_no_report_is_missed_before_the_first_friday_or_the_plan_start() -> None:
    """A plan started on Monday has nothing due on Thursday; an unstarted plan never does."""
    start = at("2026-01-05T09:00")
    assert missed_report(BERLIN_FRIDAYS, {}, start, at("2026-01-08T12:00")) is None
    assert missed_report(BERLIN_FRIDAYS, {}, None, at("2026-03-08T12:00")) is None


def test_an_operator_report_before_friday_does_not_cover_friday() -> None:
    """`report --now` on Thursday, daemon down over Friday: Friday's report is still due."""
    start = at("2026-01-05T09:00")
    reports = {1: at("2026-01-08T10:00")}
    assert missed_report(BERLIN_FRIDAYS, reports, start, at("2026-01-10T10:00")) == 1


@pytest.mark.parametrize("text", ["friday", "fri 25:00", "someday 17:00", "fri 17"])
def test_a_bad_report_time_says_the_expected_form(text: str) -> None:
    """--report-at must be DAY HH:MM."""
    with pytest.raises(ScheduleError, match="DAY HH:MM"):
        parse_report_at(text)


def test_an_unknown_zone_names_the_expected_form() -> None:
    """--report-tz must be an IANA zone name."""
    with pytest.raises(ScheduleError, match="IANA"):
        parse_zone("Mars/Olympus")


async def test_asyncio_scheduler_runs_a_scaled_job_at_scaled_intervals() -> None:
    """A real AsyncIOScheduler with a ScaledTrigger: a 4-hour job at scale 144000 fires every
    0.1 s real; the clock times it saw are 4 hours apart (within loop latency)."""
    clock = ScaledClock(144_000)
    seen: list[float] = []
    done = asyncio.Event()

    async def job() -> None:
        seen.append(clock())
        if len(seen) == 4:
            done.set()

    scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone=dt.UTC)
    scheduler.add_job(
        job, interval_trigger(4 * HOUR, clock), coalesce=True, misfire_grace_time=None
    )
    scheduler.start()
    try:
        await asyncio.wait_for(done.wait(), timeout=10)
    finally:
        scheduler.shutdown(wait=False)
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    # 0.05 s of loop latency is 2 clock hours at this scale: the bound says "about 4 h each".
    assert all(2 * HOUR < g < 6 * HOUR for g in gaps), gaps
    assert sum(gaps) == pytest.approx(12 * HOUR, abs=2 * HOUR)


def test_the_same_previous_fire_asked_twice_gives_the_next_friday_both_times() -> None:
    """APScheduler asks with the same previous_fire_time more than once per run (its run-time
    list, then the next run): both answers are the next Friday, never the same one again."""
    clock = ScaledClock(302_400, sim_origin=at("2026-03-26T09:00"), real=Real(1.7e9))
    trigger = ScaledTrigger(BERLIN_FRIDAYS.report_trigger(), clock)
    first = trigger.get_next_fire_time(None, dt.datetime.fromtimestamp(1.7e9, dt.UTC))
    later = first + dt.timedelta(milliseconds=3)
    answers = [trigger.get_next_fire_time(first, later) for _ in range(2)]
    assert answers[0] == answers[1]
    assert (
        local(round(clock.to_sim(answers[0].timestamp()))).strftime("%m-%d %H:%M") == "04-03 17:00"
    )


def test_an_unremembered_previous_fire_never_maps_before_itself() -> None:
    """A fire time the trigger did not hand out (another trigger's) still moves on."""
    clock = ScaledClock(302_400, sim_origin=at("2026-03-26T09:00"), real=Real(1.7e9))
    trigger = ScaledTrigger(BERLIN_FRIDAYS.report_trigger(), clock)
    friday = ScaledTrigger(BERLIN_FRIDAYS.report_trigger(), clock).get_next_fire_time(
        None, dt.datetime.fromtimestamp(1.7e9, dt.UTC)
    )
    nxt = trigger.get_next_fire_time(friday, friday)
    assert local(round(clock.to_sim(nxt.timestamp()))).strftime("%m-%d %H:%M") == "04-03 17:00"
