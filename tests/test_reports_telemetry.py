"""The weekly report's Telemetry section and its likely hidden stalls (reports.py), from real
samples: NvmlSampler on the fake NVML (/proc files in tmp_path), folded by the weekly aggregator
at the story's plan times, and GpuIdle told to the engine as the daemon tells it (server.py).

The stories continue tests/test_reports.py's DGX-Pixels weeks (plan start Monday 2026-01-05
09:00 Europe/Berlin). Golden: tests/golden/week_03_telemetry.md holds week 3's section with
telemetry on (regenerate with PIXELS_UPDATE_GOLDEN=1 and review the diff); the section with
telemetry off is part of week_02_status.md.
"""

from __future__ import annotations

from pathlib import Path

from pixels_daemon.core.engine import GpuIdle
from pixels_daemon.reports import plan_start, weekly_report
from pixels_daemon.telemetry.sampler import NvmlSampler
from pixels_daemon.telemetry.weekly import TelemetryFacts, WeeklyAggregator
from tests import fake_nvml
from tests.fake_nvml import GIB, FakeGpu, FakeNvml
from tests.test_reports import BERLIN, HOUR, Project, check_golden, local, two_weeks

KIB = 1024
MEM_TOTAL_KIB = 128 * 1024 * 1024  # 128 GiB, a DGX Spark's pool


class Telemetry:
    """The daemon's telemetry path for a Project: a real sampler on a fake NVML box, the weekly
    aggregator fed at the project's clock, GpuIdle to the engine whenever idle_since changes."""

    def __init__(self, p: Project, tmp_path: Path, nv: FakeNvml, period_s: float = HOUR) -> None:
        self.p = p
        self.nv = nv
        self.meminfo = tmp_path / "meminfo"
        pressure = tmp_path / "pressure"
        pressure.write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
        self.host_used(24 * GIB)
        self.sampler = NvmlSampler(
            nv, clock=lambda: 0.0, meminfo_path=self.meminfo, pressure_path=pressure
        )
        self.sampler.start()
        self.agg = WeeklyAggregator(period_s=period_s)
        self.period_s = period_s

    def host_used(self, used: int) -> None:
        available = MEM_TOTAL_KIB - used // KIB
        self.meminfo.write_text(
            f"MemTotal: {MEM_TOTAL_KIB} kB\nMemFree: 1000 kB\nMemAvailable: {available} kB\n"
        )

    @property
    def gpu(self) -> FakeGpu:
        return self.nv.gpus[0]

    def sample(self) -> None:
        p = self.p
        start = plan_start(p.state, p.config)
        assert start is not None
        self.agg.add(self.sampler.sample(slow=False), p.now, start)
        since = self.agg.idle_since(p.config.stall_s)
        if since != p.state.gpu_idle_since:
            p.do(GpuIdle(since=since))

    def until(self, when: str) -> None:
        """Sample every period up to ``when`` (local time), ticking the engine as the daemon's
        check schedule would."""
        end = local(when)
        while self.p.now + self.period_s <= end:
            self.p.now += self.period_s
            self.sample()
            self.p.tick()

    def facts(self, week: int, *, sampling: bool = True) -> TelemetryFacts:
        return TelemetryFacts(sampling=sampling, week=self.agg.week(week), interval_s=15.0)

    def section(self, week: int, **kw: bool) -> str:
        p = self.p
        facts = self.facts(week, **kw)
        text = weekly_report(p.plan, p.state, p.now, week, p.config, BERLIN, facts)
        return "## Telemetry" + text.split("## Telemetry")[1].split("## Next week's plan")[0]


def week_3(tmp_path: Path, *, idle: bool = True) -> Telemetry:
    """Week 3: WS-04 completes Monday 10:00 and WS-05 (GPU-bound) runs on, reporting progress
    every 12 h; an H100 sampled hourly, busy except (``idle``) from Tuesday 12:00 to Thursday
    15:00; power-capped and hot for three hours on Tuesday night; the daemon down from Saturday
    20:00 to Sunday 08:00. Ends Sunday 12:00."""
    p = two_weeks()
    t = Telemetry(p, tmp_path, fake_nvml.discrete())

    def gpu(util: int, temp: int, events: int, mem_gib: int) -> None:
        g = t.gpu
        g.utilization, g.temperature, g.clock_events, g.memory_used = util, temp, events, mem_gib
        g.memory_used *= GIB

    gpu(0, 38, 0x001, 0)
    p.at("2026-01-19 09:00")
    t.sample()
    gpu(65, 71, 0, 52)
    t.until("2026-01-19 10:00")
    p.report(WS_04=("complete", 1.0))
    p.report(WS_05=("in_progress", 0.05))
    changes = {
        local("2026-01-20 02:00"): lambda: gpu(65, 84, 0x004 | 0x040, 71),
        local("2026-01-20 05:00"): lambda: gpu(65, 72, 0, 48),
        local("2026-01-20 12:00"): lambda: gpu(0, 39, 0x001, 0) if idle else None,
        local("2026-01-22 15:00"): lambda: gpu(70, 76, 0, 60),
    }
    first, down, end = (
        local("2026-01-19 10:00"),
        local("2026-01-24 20:00"),
        local("2026-01-25 08:00"),
    )
    progress = 0.05
    while p.now < local("2026-01-25 12:00"):
        p.now += HOUR
        if down < p.now < end:
            continue  # no samples, no ticks: the next interval is a gap
        change = changes.get(p.now)
        if change is not None:
            change()
        if (p.now - first) % (12 * HOUR) == 0:
            progress = round(progress + 0.05, 2)
            p.report(WS_05=("in_progress", progress))  # moving: no visible stall
        t.sample()
        p.tick()
    return t


def test_week_3_telemetry_section_matches_the_golden_file(tmp_path: Path) -> None:
    """Busy hours, idle spans, throttling, peaks, the gap and WS-05's hidden stall, as
    reviewed."""
    t = week_3(tmp_path)
    check_golden("week_03_telemetry.md", t.section(3))


def test_gpu_bound_work_in_progress_with_the_gpu_idle_for_a_day_is_flagged(
    tmp_path: Path,
) -> None:
    """WS-05 in progress, every GPU idle from Tuesday to Thursday: one hidden_stall escalation,
    opened when the idle span reached 24 h and resolved by the first busy sample. The span starts
    at the sample before the first idle reading (a reading speaks for the interval it ends)."""
    t = week_3(tmp_path)
    (esc,) = [e for e in t.p.state.escalations.values() if e.kind == "hidden_stall"]
    assert esc.affected_workstreams == ["WS-05"]
    assert esc.raised_at == local("2026-01-21 11:00")
    assert esc.resolved_at == local("2026-01-22 15:00")
    flagged = "- WS-05 (SDXL Inference Optimization): GPU idle since 2026-01-20 11:00 CET"
    assert flagged in t.section(3)


def test_a_busy_gpu_is_not_flagged(tmp_path: Path) -> None:
    """The same week with the GPU busy throughout: no hidden stall."""
    t = week_3(tmp_path, idle=False)
    assert not [e for e in t.p.state.escalations.values() if e.kind == "hidden_stall"]
    assert t.section(3).endswith("### Likely hidden stalls\n\n" + LOOKED_FOR + "\nNone.\n\n")


LOOKED_FOR = (
    "A GPU-bound workstream (WS-05, WS-06) in progress while every GPU stayed idle (below 10% "
    "utilization, no gap in the samples) for the stall window (1d).\n"
)


def test_work_that_is_not_gpu_bound_is_not_flagged(tmp_path: Path) -> None:
    """WS-04 (not GPU-bound) in progress for two days with the GPU idle: not flagged."""
    p = two_weeks()
    t = Telemetry(p, tmp_path, fake_nvml.discrete())
    t.gpu.utilization = 0
    t.sample()
    for day in ("2026-01-17", "2026-01-18"):
        t.until(f"{day} 12:00")
        p.report(WS_04=("in_progress", 0.6 if day == "2026-01-17" else 0.7))
    assert p.state.gpu_idle_since is not None  # the GPU did idle for the window
    assert not [e for e in p.state.escalations.values() if e.kind == "hidden_stall"]
    assert "None.\n" in t.section(3)


def test_gb10_peak_memory_is_unified_memory(tmp_path: Path) -> None:
    """On a GB10 the peak is the host pool's, said to be unified memory."""
    p = two_weeks()
    t = Telemetry(p, tmp_path, fake_nvml.gb10())
    t.host_used(97 * GIB)
    p.at("2026-01-19 09:00")
    t.sample()
    t.host_used(40 * GIB)
    t.until("2026-01-19 12:00")
    section = t.section(3)
    assert (
        "- Peak memory: 97.0 GiB of 128.0 GiB unified memory (CPU and GPU share it: the GPU has "
        "no memory of its own; MemTotal - MemAvailable)" in section
    )


def test_without_a_gpu_the_section_says_unified_memory_only(tmp_path: Path) -> None:
    """NVML absent: no GPU figures, the reason, and the host's peak."""
    p = two_weeks()
    t = Telemetry(p, tmp_path, fake_nvml.library_not_found())
    t.sample()
    t.until("2026-01-17 12:00")
    section = t.section(2)
    assert "- No GPU on this host: unified memory only (NVML library not found" in section
    assert "- Peak memory: 24.0 GiB of 128.0 GiB unified memory" in section
    assert "GPU busy" not in section


def test_a_week_without_samples_while_telemetry_runs_says_so(tmp_path: Path) -> None:
    """Telemetry on, but nothing sampled in the week asked for."""
    p = two_weeks()
    t = Telemetry(p, tmp_path, fake_nvml.discrete())
    t.sample()
    assert "No telemetry samples in this week." in t.section(1)


def test_figures_from_before_telemetry_was_turned_off_are_shown_as_such(tmp_path: Path) -> None:
    """Samples in the week, telemetry off now: the figures, with a line saying so."""
    p = two_weeks()
    t = Telemetry(p, tmp_path, fake_nvml.discrete())
    t.sample()
    t.until("2026-01-17 12:00")
    section = t.section(2, sampling=False)
    assert "Telemetry is off now; these are the samples taken while it was on." in section
    assert "- GPU busy: 19.0 h" in section


def test_several_gpus_get_a_row_each(tmp_path: Path) -> None:
    """Two GPUs: a table with each one's busy, idle, throttling, memory and temperature."""
    p = two_weeks()
    nv = FakeNvml([FakeGpu(uuid="GPU-a", clock_events=0), FakeGpu(uuid="GPU-b", utilization=0)])
    t = Telemetry(p, tmp_path, nv)
    t.sample()
    t.until("2026-01-16 21:00")
    section = t.section(2)
    assert "| 0: NVIDIA H100 80GB HBM3 | 4.0 h | 0.0 h | none | 20.0 GiB of 80.0 GiB | 41 °C |" in (
        section
    )
    assert "| 1: NVIDIA H100 80GB HBM3 | 0.0 h | 4.0 h | 4.0 h (sw_power_cap 4.0 h) |" in section
