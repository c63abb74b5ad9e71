"""Per-plan-week telemetry figures for the weekly report, and the GPU-idle signal. Pure.

``WeeklyAggregator.add(sample, at, start)`` takes each sample with its plan time ``at`` (the
daemon's scaled clock) and the plan's start; weeks are numbered as ``reports.week_of`` numbers
them. Rules (everything that decides what a week's telemetry figures mean lives here):

- A sample closes the *interval* since the previous sample and speaks for all of it: NVML's
  utilization and clock-event reasons describe the last fraction of a second before the call, so
  the newest reading is the best account of the interval just ended. The first sample has none.
- An interval longer than ``GAP_PERIODS`` sample periods is a *gap* (the daemon was down,
  telemetry was off or stuck): counted as gap time, never as busy, idle or throttled time.
- A GPU is *busy* over an interval when its utilization was at least ``busy_ratio``, *idle* when
  below, neither when it gave no utilization (lost, unsupported, failed this time). Together the
  GPUs are busy when any is busy, idle when every one reported and none is busy, else neither.
- *Throttled*: a clock-event reason in ``sampler.THROTTLE_REASONS`` was set (power cap, hardware
  slowdown, thermal slowdown, power brake): the GPU held back. gpu_idle, application clocks, sync
  boost and display clock are settings or idleness, not throttling. Time is kept per reason.
- Intervals are split at week boundaries; a sample's count and its peaks (memory used,
  temperature) go to the week it was taken in.
- Memory: a GPU's peak is its own (dedicated) memory where NVML reports it. On a unified box
  (GB10) the GPU has no memory of its own: the week's ``unified`` is set and the host's peak
  (MemTotal - MemAvailable) is the figure. Host memory is kept on every box.
- An *idle span* is a run of idle intervals (all GPUs) with no gap: from the start of its first
  interval to the end of its last. Spans of at least ``MIN_IDLE_SPAN_S`` are kept in every week
  they overlap (the longest ``MAX_IDLE_SPANS``); the open span is shown too, not yet kept.
  ``idle_since(window)`` is the open span's start once it has lasted ``window``: the hidden-stall
  signal the daemon passes to the engine (``GpuIdle``).
- The weeks are counted from one plan start (kept in the aggregates); another start (a new plan
  on the state dir) starts them afresh.

Everything is in one small msgspec Struct (``Aggregates``, a few hundred bytes a week) that the
daemon saves as STATE_DIR/telemetry/weeks.json (``save_aggregates``, ``load_aggregates``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, TypeVar

import msgspec
from msgspec import Struct, field

from pixels_daemon.reports import WEEK, week_of
from pixels_daemon.telemetry.sampler import (
    THROTTLE_REASONS,
    GpuSample,
    TelemetrySample,
    clock_event_names,
)

#: Utilization at or above this is busy. NVML's utilization is the share of its last ~1/6-1 s in
#: which any kernel ran: a GPU between jobs reads 0-2 % (driver housekeeping, a display), one
#: running a training or inference job reads well above 50 % even when input-bound. 10 % sits
#: clear of the noise without calling a slow job idle.
BUSY_RATIO = 0.10

#: An interval longer than this many sample periods is a gap. One skipped tick (the previous
#: sample still running) makes 2 periods and is still measured; a restart, telemetry turned off
#: or a stuck sampler makes more, and nobody knows what the GPU did then.
GAP_PERIODS = 3.0

#: Idle spans shorter than an hour are the pauses between jobs; the report lists longer ones.
MIN_IDLE_SPAN_S = 3600.0
#: The longest this many idle spans are kept per week: enough to see a pattern, a bounded file.
MAX_IDLE_SPANS = 5

#: weeks.json's format; another number is not read (the figures start afresh).
FORMAT = 1

Activity = Literal["busy", "idle", "unknown"]
N = TypeVar("N", int, float)


class IdleSpan(Struct, frozen=True, array_like=True):
    """Every GPU idle, with no gap, from ``start`` to ``end`` (plan time)."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


class GpuWeek(Struct, kw_only=True):
    """One GPU's week. Times in seconds of plan time; None: never reported that week."""

    index: int
    name: str = "unknown"
    uuid: str = ""
    memory: str = "unknown"  # dedicated | unified | unknown, as the sampler classified it
    busy_s: float = 0.0
    idle_s: float = 0.0
    throttled_s: float = 0.0
    throttle_reasons_s: dict[str, float] = field(default_factory=dict)
    peak_memory_used_bytes: int | None = None  # dedicated memory only
    memory_total_bytes: int | None = None
    peak_temperature_celsius: float | None = None


class WeekTelemetry(Struct, kw_only=True):
    """One plan week's figures. busy_s / idle_s / throttled_s: all GPUs together (see the module
    rules); sampled_s: interval time measured (busy, idle or neither); gap_s: time in gaps."""

    week: int
    samples: int = 0
    gpu_samples: int = 0  # samples taken with GPU telemetry on
    disabled_reason: str | None = None  # why GPU telemetry was off, when it was
    sampled_s: float = 0.0
    gap_s: float = 0.0
    busy_s: float = 0.0
    idle_s: float = 0.0
    throttled_s: float = 0.0
    gpus: list[GpuWeek] = field(default_factory=list)  # by index
    unified: bool = False  # the GPU's memory is the host's (GB10)
    peak_host_used_bytes: int | None = None  # MemTotal - MemAvailable
    host_total_bytes: int | None = None
    idle_spans: list[IdleSpan] = field(default_factory=list)  # longest first

    def gpu(self, index: int) -> GpuWeek:
        """The GPU's entry, made on first use."""
        for g in self.gpus:
            if g.index == index:
                return g
        entry = GpuWeek(index=index)
        self.gpus.append(entry)
        self.gpus.sort(key=lambda g: g.index)
        return entry


class Aggregates(Struct, kw_only=True):
    """Everything the aggregator keeps: the weeks and where the sampling stands."""

    format: int = FORMAT
    plan_start: float | None = None  # the weeks are counted from here
    last_at: float | None = None  # plan time of the latest sample
    idle_start: float | None = None  # the open idle span's start; None: none open
    weeks: dict[int, WeekTelemetry] = field(default_factory=dict)


class TelemetryFacts(Struct, frozen=True, kw_only=True):
    """What the weekly report's Telemetry section is drawn from (reports.weekly_report): the
    daemon's telemetry, which is not in the state. sampling: telemetry runs in the daemon writing
    the report; week: that week's figures (None: no sample fell in it); interval_s: real seconds
    between samples; busy_ratio: the busy line."""

    sampling: bool
    week: WeekTelemetry | None = None
    interval_s: float | None = None
    busy_ratio: float = BUSY_RATIO


class WeeklyAggregator:
    """Folds samples into per-week figures; see the module rules. ``period_s``: the sampling
    period in plan seconds (the telemetry interval times the time scale)."""

    def __init__(
        self,
        aggregates: Aggregates | None = None,
        *,
        period_s: float,
        busy_ratio: float = BUSY_RATIO,
    ) -> None:
        if not period_s > 0:
            raise ValueError(f"period_s must be positive, got {period_s}")
        if not 0.0 < busy_ratio <= 1.0:
            raise ValueError(f"busy_ratio must be in (0, 1], got {busy_ratio}")
        self.aggregates = aggregates if aggregates is not None else Aggregates()
        self.period_s = period_s
        self.busy_ratio = busy_ratio
        #: Set by every change; the daemon clears it when it has saved.
        self.dirty = False

    # -- feeding -------------------------------------------------------------------------------

    def add(self, sample: TelemetrySample, at: float, start: float) -> None:
        """Fold in one sample taken at plan time ``at``; weeks count from ``start``."""
        agg = self.aggregates
        if agg.plan_start != start:
            if agg.plan_start is not None:
                self.aggregates = agg = Aggregates()
            agg.plan_start = start
        self.dirty = True
        prev, agg.last_at = agg.last_at, at
        self._peaks(self._week(week_of(at, start)), sample)
        if prev is None or at <= prev:
            self._close_idle(prev)  # no interval: the first sample, or the clock went back
            return
        if at - prev > GAP_PERIODS * self.period_s:
            for week, seconds in _split(prev, at, start):
                self._week(week).gap_s += seconds
            self._close_idle(prev)
            return
        overall, per_gpu = self._classify(sample)
        throttled = {g.index: _throttle_reasons(g) for g in sample.gpus}
        for week, seconds in _split(prev, at, start):
            self._interval(self._week(week), seconds, overall, per_gpu, throttled)
        if overall == "idle":
            if agg.idle_start is None:
                agg.idle_start = prev
        else:
            self._close_idle(prev)

    def interrupt(self) -> None:
        """Close the open idle span where it was last seen: what follows is unknown (a restart:
        the downtime is a gap, whatever the next sample says)."""
        if self.aggregates.idle_start is not None:
            self._close_idle(self.aggregates.last_at)
            self.dirty = True

    # -- reading -------------------------------------------------------------------------------

    def week(self, week: int) -> WeekTelemetry | None:
        """A copy of the week's figures with the open idle span shown; None: no sample in it."""
        agg = self.aggregates
        found = agg.weeks.get(week)
        if found is None:
            return None
        copy = msgspec.msgpack.decode(msgspec.msgpack.encode(found), type=WeekTelemetry)
        span = self.open_span()
        if span is not None and agg.plan_start is not None:
            begin = agg.plan_start + (week - 1) * WEEK
            if span.start < begin + WEEK and span.end > begin:
                _keep(copy, span)
        return copy

    def open_span(self) -> IdleSpan | None:
        """The idle span going on now (to the latest sample), if it is long enough to keep."""
        agg = self.aggregates
        if agg.idle_start is None or agg.last_at is None:
            return None
        span = IdleSpan(agg.idle_start, agg.last_at)
        return span if span.seconds >= MIN_IDLE_SPAN_S else None

    def idle_since(self, window: float) -> float | None:
        """When the open idle span began, once it has lasted ``window``; else None."""
        agg = self.aggregates
        if agg.idle_start is None or agg.last_at is None:
            return None
        return agg.idle_start if agg.last_at - agg.idle_start >= window else None

    # -- inside --------------------------------------------------------------------------------

    def _week(self, week: int) -> WeekTelemetry:
        weeks = self.aggregates.weeks
        found = weeks.get(week)
        if found is None:
            found = weeks[week] = WeekTelemetry(week=week)
        return found

    def _classify(self, sample: TelemetrySample) -> tuple[Activity, dict[int, Activity]]:
        per_gpu: dict[int, Activity] = {}
        for g in sample.gpus:
            util = g.utilization_ratio
            if g.health != "ok" or util is None:
                per_gpu[g.index] = "unknown"
            else:
                per_gpu[g.index] = "busy" if util >= self.busy_ratio else "idle"
        states = set(per_gpu.values())
        if "busy" in states:
            return "busy", per_gpu
        if states == {"idle"}:
            return "idle", per_gpu
        return "unknown", per_gpu  # no GPU, or one that cannot tell

    @staticmethod
    def _interval(
        week: WeekTelemetry,
        seconds: float,
        overall: Activity,
        per_gpu: dict[int, Activity],
        throttled: dict[int, tuple[str, ...]],
    ) -> None:
        week.sampled_s += seconds
        if overall == "busy":
            week.busy_s += seconds
        elif overall == "idle":
            week.idle_s += seconds
        if any(throttled.values()):
            week.throttled_s += seconds
        for index, activity in per_gpu.items():
            gpu = week.gpu(index)
            if activity == "busy":
                gpu.busy_s += seconds
            elif activity == "idle":
                gpu.idle_s += seconds
            reasons = throttled.get(index, ())
            if reasons:
                gpu.throttled_s += seconds
                for reason in reasons:
                    gpu.throttle_reasons_s[reason] = (
                        gpu.throttle_reasons_s.get(reason, 0.0) + seconds
                    )

    @staticmethod
    def _peaks(week: WeekTelemetry, sample: TelemetrySample) -> None:
        week.samples += 1
        info = sample.info
        if info.gpu_enabled:
            week.gpu_samples += 1
        elif info.disabled_reason:
            week.disabled_reason = info.disabled_reason
        if sample.unified:
            week.unified = True
        host = sample.host
        if host is not None:
            week.peak_host_used_bytes = _max(week.peak_host_used_bytes, host.used_bytes)
            week.host_total_bytes = host.total_bytes
        described = {g.index: g for g in info.gpus}
        for g in sample.gpus:
            gpu = week.gpu(g.index)
            about = described.get(g.index)
            if about is not None:
                gpu.name, gpu.memory = about.name, about.memory
            gpu.uuid = g.uuid
            if g.memory_used_bytes is not None:
                gpu.peak_memory_used_bytes = _max(gpu.peak_memory_used_bytes, g.memory_used_bytes)
                gpu.memory_total_bytes = g.memory_total_bytes
            if g.temperature_celsius is not None:
                gpu.peak_temperature_celsius = _max(
                    gpu.peak_temperature_celsius, g.temperature_celsius
                )

    def _close_idle(self, end: float | None) -> None:
        agg = self.aggregates
        start, agg.idle_start = agg.idle_start, None
        if start is None or end is None or agg.plan_start is None:
            return
        span = IdleSpan(start, end)
        if span.seconds < MIN_IDLE_SPAN_S:
            return
        for week, _ in _split(start, end, agg.plan_start):
            _keep(self._week(week), span)


def _throttle_reasons(gpu: GpuSample) -> tuple[str, ...]:
    mask = gpu.clock_event_reasons
    if gpu.health != "ok" or mask is None:
        return ()
    return tuple(n for n in clock_event_names(mask) if n in THROTTLE_REASONS)


def _split(begin: float, end: float, start: float) -> list[tuple[int, float]]:
    """(week, seconds) of the interval (begin, end], cut at week boundaries; time before the
    plan's start counts to week 1, as ``week_of`` counts it."""
    first, last = week_of(begin, start), week_of(end, start)
    out: list[tuple[int, float]] = []
    for week in range(first, last + 1):
        lo = begin if week == first else start + (week - 1) * WEEK
        hi = end if week == last else start + week * WEEK
        if hi > lo:
            out.append((week, hi - lo))
    return out


def _keep(week: WeekTelemetry, span: IdleSpan) -> None:
    """Add a span to the week's, longest first (then earliest), at most MAX_IDLE_SPANS."""
    spans = [s for s in week.idle_spans if s.start != span.start] + [span]
    spans.sort(key=lambda s: (-s.seconds, s.start))
    week.idle_spans = spans[:MAX_IDLE_SPANS]


def _max(old: N | None, new: N) -> N:
    return new if old is None or new > old else old


# -- the file ------------------------------------------------------------------------------------


class AggregatesError(Exception):
    """weeks.json cannot be read; the message names the file and what was wrong."""


def load_aggregates(path: Path) -> Aggregates:
    """The aggregates saved at ``path``; empty ones if there is no file. AggregatesError if the
    file is unreadable, not ours, or of another format."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Aggregates()
    except OSError as exc:
        raise AggregatesError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        agg = msgspec.json.decode(data, type=Aggregates)
    except msgspec.DecodeError as exc:
        raise AggregatesError(f"{path} is not telemetry aggregates ({exc})") from None
    if agg.format != FORMAT:
        raise AggregatesError(f"{path} has format {agg.format}; this daemon reads {FORMAT}")
    return agg


def encode_aggregates(aggregates: Aggregates) -> bytes:
    """The file's bytes (JSON, one line: it is for the daemon; `jq` reads it for people)."""
    return msgspec.json.encode(aggregates) + b"\n"


def save_aggregates(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably: a reader (or a crash) sees the old file
    or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
