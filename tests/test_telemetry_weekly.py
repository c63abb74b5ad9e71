"""telemetry/weekly.py: per-plan-week aggregates from real NvmlSampler samples (the fake NVML at the
boundary, /proc files in tmp_path) at injected plan times."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixels_daemon.reports import WEEK
from pixels_daemon.telemetry.sampler import NvmlSampler, TelemetrySample
from pixels_daemon.telemetry.weekly import (
    MIN_IDLE_SPAN_S,
    Aggregates,
    AggregatesError,
    IdleSpan,
    WeeklyAggregator,
    encode_aggregates,
    load_aggregates,
    save_aggregates,
)
from tests import fake_nvml
from tests.fake_nvml import GIB, FakeGpu, FakeNvml

T0 = 1_800_000_000.0  # the plan's start
PERIOD = 15.0
HOUR = 3600.0
DAY = 24 * HOUR
KIB = 1024
MEM_TOTAL_KIB = 128 * 1024 * 1024  # 128 GiB


class Box:
    """A fake NVML box behind a real sampler, its /proc files, and an aggregator fed at plan
    times of the test's choosing."""

    def __init__(self, tmp_path: Path, nv: FakeNvml | None) -> None:
        self.nv = nv
        self.meminfo = tmp_path / "meminfo"
        self.pressure = tmp_path / "pressure"
        self.pressure.write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
        self.host_used(16 * GIB)
        self.sampler = NvmlSampler(
            nv, clock=lambda: T0, meminfo_path=self.meminfo, pressure_path=self.pressure
        )
        self.sampler.start()
        self.agg = WeeklyAggregator(period_s=PERIOD)
        self.now = T0

    def host_used(self, used: int) -> None:
        available = MEM_TOTAL_KIB - used // KIB
        self.meminfo.write_text(
            f"MemTotal: {MEM_TOTAL_KIB} kB\nMemFree: 1000 kB\nMemAvailable: {available} kB\n"
            "SwapTotal: 0 kB\nSwapFree: 0 kB\n"
        )

    def gpu(self, index: int = 0) -> FakeGpu:
        assert self.nv is not None
        return self.nv.gpus[index]

    def sample(self) -> TelemetrySample:
        return self.sampler.sample(slow=False)

    def at(self, t: float) -> Box:
        """One sample at plan time ``t``."""
        self.now = t
        self.agg.add(self.sample(), t, T0)
        return self

    def run(self, seconds: float, step: float = PERIOD) -> Box:
        """A sample every ``step`` for ``seconds`` after now."""
        end = self.now + seconds
        while self.now + step <= end + 1e-9:
            self.at(self.now + step)
        return self


def busy(box: Box, percent: int = 60, index: int = 0) -> None:
    box.gpu(index).utilization = percent


def hourly(box: Box) -> Box:
    """Sampled once an hour (a high time scale): days of samples in a few dozen."""
    box.agg = WeeklyAggregator(period_s=HOUR)
    return box


@pytest.fixture
def h100(tmp_path: Path) -> Box:
    box = Box(tmp_path, fake_nvml.discrete())
    box.gpu().clock_events = 0  # no reason set unless a test sets one
    return box


# --- busy, idle, gaps ---------------------------------------------------------------------------


def test_intervals_at_or_above_ten_percent_are_busy_time(h100: Box) -> None:
    """An hour of samples at 37 %: an hour busy (the first sample opens the first interval)."""
    busy(h100, 37)
    h100.at(T0).run(HOUR)
    week = h100.agg.week(1)
    assert week is not None
    assert (week.busy_s, week.idle_s, week.sampled_s) == (HOUR, 0.0, HOUR)
    assert week.gpus[0].busy_s == HOUR


def test_utilization_below_ten_percent_is_idle_and_ten_is_busy(h100: Box) -> None:
    """9 % is idle; exactly 10 % is busy."""
    busy(h100, 9)
    h100.at(T0).run(HOUR)
    busy(h100, 10)
    h100.run(HOUR)
    week = h100.agg.week(1)
    assert week is not None
    assert (week.idle_s, week.busy_s) == (HOUR, HOUR)


def test_an_interval_longer_than_three_periods_is_a_gap_not_busy_time(h100: Box) -> None:
    """The daemon down for an hour: the hour is gap time; neither busy nor idle."""
    busy(h100, 80)
    h100.at(T0).run(10 * PERIOD)
    h100.at(h100.now + HOUR)
    week = h100.agg.week(1)
    assert week is not None
    assert (week.busy_s, week.gap_s, week.sampled_s) == (10 * PERIOD, HOUR, 10 * PERIOD)


def test_one_skipped_sample_is_still_measured(h100: Box) -> None:
    """Two periods (a tick skipped while the previous sample ran) is not a gap."""
    busy(h100, 80)
    h100.at(T0).at(T0 + 2 * PERIOD)
    week = h100.agg.week(1)
    assert week is not None
    assert (week.busy_s, week.gap_s) == (2 * PERIOD, 0.0)


def test_a_gpu_without_a_utilization_reading_is_neither_busy_nor_idle(h100: Box) -> None:
    """A lost GPU answers nothing: its time is measured but not busy or idle."""
    h100.at(T0)
    assert h100.nv is not None
    h100.nv.lose(0)
    h100.run(HOUR)
    week = h100.agg.week(1)
    assert week is not None
    assert (week.sampled_s, week.busy_s, week.idle_s) == (HOUR, 0.0, 0.0)


def test_any_busy_gpu_makes_the_box_busy_and_all_idle_makes_it_idle(tmp_path: Path) -> None:
    """Two GPUs: one busy is busy; both idle is idle; per-GPU figures kept apart."""
    box = Box(tmp_path, FakeNvml([FakeGpu(uuid="GPU-a"), FakeGpu(uuid="GPU-b")]))
    busy(box, 90, 0)
    busy(box, 0, 1)
    box.at(T0).run(HOUR)
    busy(box, 0, 0)
    box.run(HOUR)
    week = box.agg.week(1)
    assert week is not None
    assert (week.busy_s, week.idle_s) == (HOUR, HOUR)
    assert [(g.busy_s, g.idle_s) for g in week.gpus] == [(HOUR, HOUR), (0.0, 2 * HOUR)]


# --- peaks and throttling -----------------------------------------------------------------------


def test_peak_memory_and_temperature_are_the_weeks_highest_readings(h100: Box) -> None:
    """The highest memory used (with the total) and temperature of the week's samples."""
    gpu = h100.gpu()
    for used, temp in ((20, 41), (71, 84), (30, 60)):
        gpu.memory_used, gpu.temperature = used * GIB, temp
        h100.at(h100.now + PERIOD)
    week = h100.agg.week(1)
    assert week is not None
    (g,) = week.gpus
    assert (g.peak_memory_used_bytes, g.memory_total_bytes) == (71 * GIB, 80 * GIB)
    assert g.peak_temperature_celsius == 84.0
    assert (g.name, g.memory) == ("NVIDIA H100 80GB HBM3", "dedicated")


def test_power_and_thermal_reasons_count_as_throttling_idle_and_app_clocks_do_not(
    h100: Box,
) -> None:
    """sw_power_cap and hw_thermal_slowdown are throttling, per reason; gpu_idle (0x1) and
    applications_clocks_setting (0x2) are not."""
    gpu = h100.gpu()
    h100.at(T0)
    gpu.clock_events = 0x001 | 0x002
    h100.run(HOUR)
    gpu.clock_events = 0x004
    h100.run(HOUR)
    gpu.clock_events = 0x004 | 0x040
    h100.run(HOUR)
    week = h100.agg.week(1)
    assert week is not None
    assert week.throttled_s == 2 * HOUR
    assert week.gpus[0].throttle_reasons_s == {
        "sw_power_cap": 2 * HOUR,
        "hw_thermal_slowdown": HOUR,
    }


# --- weeks --------------------------------------------------------------------------------------


def test_an_interval_across_a_week_boundary_is_split_between_the_weeks(h100: Box) -> None:
    """A sample 10 s before week 2 and the next 5 s into it: 10 s busy in week 1, 5 s in week 2;
    each sample counted in its own week."""
    busy(h100, 80)
    h100.at(T0 + WEEK - 10).at(T0 + WEEK + 5)
    one, two = h100.agg.week(1), h100.agg.week(2)
    assert one is not None and two is not None
    assert (one.busy_s, one.samples) == (10.0, 1)
    assert (two.busy_s, two.samples) == (5.0, 1)


def test_a_week_without_samples_has_no_figures(h100: Box) -> None:
    """week() is None for a week no sample fell in."""
    h100.at(T0)
    assert h100.agg.week(3) is None


def test_another_plan_start_starts_the_weeks_afresh(h100: Box) -> None:
    """Figures counted from one start are not carried into weeks counted from another."""
    h100.at(T0).run(HOUR)
    h100.agg.add(h100.sample(), T0 + 2 * HOUR, T0 + HOUR)
    week = h100.agg.week(1)
    assert week is not None
    assert (week.samples, week.sampled_s) == (1, 0.0)


# --- memory models ------------------------------------------------------------------------------


def test_gb10_memory_is_unified_and_its_peak_is_host_memory(tmp_path: Path) -> None:
    """The GB10 reports no GPU memory: the week is unified, the GPU has no memory peak, and the
    host's MemTotal - MemAvailable is the peak."""
    box = Box(tmp_path, fake_nvml.gb10())
    box.host_used(90 * GIB)
    box.at(T0)
    box.host_used(40 * GIB)
    box.at(T0 + PERIOD)
    week = box.agg.week(1)
    assert week is not None
    assert week.unified is True
    assert week.gpus[0].memory == "unified"
    assert week.gpus[0].peak_memory_used_bytes is None
    assert (week.peak_host_used_bytes, week.host_total_bytes) == (90 * GIB, 128 * GIB)


def test_without_nvml_only_host_memory_is_counted_and_the_reason_kept(tmp_path: Path) -> None:
    """Library not found: samples and host memory, no GPU, no busy or idle time."""
    box = Box(tmp_path, fake_nvml.library_not_found())
    box.at(T0).run(HOUR)
    week = box.agg.week(1)
    assert week is not None
    assert (week.samples, week.gpu_samples, week.gpus) == (241, 0, [])
    assert week.disabled_reason is not None and "library not found" in week.disabled_reason
    assert (week.busy_s, week.idle_s, week.sampled_s) == (0.0, 0.0, HOUR)
    assert week.peak_host_used_bytes == 16 * GIB


# --- idle spans ---------------------------------------------------------------------------------


def test_idle_since_is_the_span_start_once_it_lasted_the_window(h100: Box) -> None:
    """Idle from the first sample: None until the span lasts the window, then its start."""
    busy(hourly(h100), 0)
    h100.at(T0).run(DAY - HOUR, step=HOUR)
    assert h100.agg.idle_since(DAY) is None
    h100.run(HOUR, step=HOUR)
    assert h100.agg.idle_since(DAY) == T0


def test_a_busy_sample_ends_the_idle_span_and_keeps_it_in_the_week(h100: Box) -> None:
    """Idle 2 h, then busy: the span [start, last idle sample] is kept; idle_since is None."""
    busy(h100, 0)
    h100.at(T0).run(2 * HOUR)
    busy(h100, 80)
    h100.run(PERIOD)
    week = h100.agg.week(1)
    assert week is not None
    assert week.idle_spans == [IdleSpan(T0, T0 + 2 * HOUR)]
    assert h100.agg.idle_since(0.0) is None


def test_a_gap_ends_the_idle_span(h100: Box) -> None:
    """No sample for an hour: idle before and after are two spans; the clock restarts."""
    busy(h100, 0)
    h100.at(T0).run(2 * HOUR)
    h100.at(h100.now + HOUR).run(HOUR)
    assert h100.agg.idle_since(0.0) == T0 + 3 * HOUR


def test_short_idle_spans_are_not_kept(h100: Box) -> None:
    """A pause between jobs shorter than an hour is not listed."""
    busy(h100, 0)
    h100.at(T0).run(MIN_IDLE_SPAN_S - PERIOD)
    busy(h100, 80)
    h100.run(PERIOD)
    week = h100.agg.week(1)
    assert week is not None
    assert week.idle_spans == []


def test_the_open_span_is_shown_and_a_span_across_weeks_is_in_both(h100: Box) -> None:
    """Idle from a day before week 2 to a day into it, still going: both weeks show it."""
    busy(hourly(h100), 0)
    h100.at(T0 + WEEK - DAY).run(2 * DAY, step=HOUR)
    span = IdleSpan(T0 + WEEK - DAY, T0 + WEEK + DAY)
    one, two = h100.agg.week(1), h100.agg.week(2)
    assert one is not None and two is not None
    assert (one.idle_spans, two.idle_spans) == ([span], [span])
    assert h100.agg.aggregates.weeks[2].idle_spans == []  # shown, not kept until it ends


def test_interrupt_closes_the_open_span_where_it_was_last_seen(h100: Box) -> None:
    """A restart: the open span ends at the last sample and idle_since is None."""
    busy(h100, 0)
    h100.at(T0).run(2 * HOUR)
    h100.agg.interrupt()
    assert h100.agg.idle_since(0.0) is None
    assert h100.agg.aggregates.weeks[1].idle_spans == [IdleSpan(T0, T0 + 2 * HOUR)]


# --- the file -----------------------------------------------------------------------------------


def test_aggregates_round_trip_through_the_file(h100: Box, tmp_path: Path) -> None:
    """Saved and loaded, the aggregates are equal; an aggregator on them goes on counting."""
    busy(h100, 0)
    h100.at(T0).run(HOUR)
    path = tmp_path / "telemetry" / "weeks.json"
    save_aggregates(path, encode_aggregates(h100.agg.aggregates))
    loaded = load_aggregates(path)
    assert loaded == h100.agg.aggregates
    again = WeeklyAggregator(loaded, period_s=PERIOD)
    again.add(h100.sample(), h100.now + PERIOD, T0)
    week = again.week(1)
    assert week is not None
    assert week.idle_s == HOUR + PERIOD


def test_no_file_is_empty_aggregates(tmp_path: Path) -> None:
    assert load_aggregates(tmp_path / "weeks.json") == Aggregates()


def test_a_file_that_is_not_aggregates_is_refused_naming_it(tmp_path: Path) -> None:
    """Garbage: AggregatesError with the path, not a traceback from the decoder."""
    path = tmp_path / "weeks.json"
    path.write_text("{not json")
    with pytest.raises(AggregatesError, match=r"weeks\.json is not telemetry aggregates"):
        load_aggregates(path)


def test_a_file_of_another_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weeks.json"
    path.write_text('{"format": 99}')
    with pytest.raises(AggregatesError, match="format 99"):
        load_aggregates(path)
