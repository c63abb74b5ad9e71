"""The weekly telemetry figures in a running daemon (server.py + telemetry/recorder.py): kept
across a restart in STATE_DIR/telemetry/weeks.json, written into the weekly report, and the GPU
idle for the stall window told to the engine (and forgotten at a restart: the downtime is a gap).

In process, on a real state dir (SQLite, ipc sockets): NvmlSampler on the fake NVML with /proc
files in the state dir, a hand-driven clock, samples taken with sample_once() (the service's own
interval is 1000 s, so only its first sample, at start, comes by itself)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import anyio
import pytest

from pixels_daemon.core.engine import EngineConfig, ReportDue
from pixels_daemon.plan import default_plan
from pixels_daemon.server import Config, Server
from pixels_daemon.store import EventStore
from pixels_daemon.telemetry.sampler import NvmlSampler
from tests import fake_nvml
from tests.fake_nvml import FakeNvml

T0 = 1_800_000_000.0
PERIOD = 1000.0  # the telemetry interval, in real seconds = plan seconds at scale 1
WINDOW = 3 * PERIOD  # the stall window, short so a few samples reach it


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def nv() -> FakeNvml:
    return fake_nvml.discrete()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def sampler(state_dir: Path, nv: FakeNvml) -> NvmlSampler:
    meminfo, pressure = state_dir / "meminfo", state_dir / "pressure"
    meminfo.write_text("MemTotal: 134217728 kB\nMemAvailable: 100000000 kB\n")
    pressure.write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    return NvmlSampler(nv, meminfo_path=meminfo, pressure_path=pressure)


class Running:
    """A Server serving in this event loop until ``stop()``."""

    def __init__(self, state_dir: Path, nv: FakeNvml, clock: Clock, telemetry: bool = True):
        config = Config(
            state_dir=state_dir,
            telemetry_interval_s=PERIOD if telemetry else None,
            engine=EngineConfig(stall_s=WINDOW),
        )
        self.srv = Server(config, default_plan(), clock=clock, sampler=sampler(state_dir, nv))
        self.clock = clock
        self.task: asyncio.Future[None] | None = None

    async def start(self) -> Server:
        self.task = asyncio.ensure_future(self.srv.serve())
        with anyio.fail_after(10):
            await self.srv.ready.wait()
            while self.srv.telemetry is not None and self.srv.telemetry.taken < 1:
                await anyio.sleep(0.01)  # the service's first sample, at start, off the loop
        return self.srv

    async def samples(self, count: int, every: float = PERIOD) -> None:
        assert self.srv.telemetry is not None
        for _ in range(count):
            self.clock.now += every
            assert await self.srv.telemetry.sample_once() is not None

    async def stop(self) -> None:
        self.srv.stop()
        assert self.task is not None
        await self.task


async def test_a_weeks_figures_survive_a_restart_and_reach_the_report(
    state_dir: Path, nv: FakeNvml, clock: Clock
) -> None:
    """Busy samples before and after a restart add up in week 1's report."""
    nv.gpus[0].utilization = 60
    first = Running(state_dir, nv, clock)
    await first.start()
    await first.samples(5)  # 5000 s busy
    await first.stop()
    saved = json.loads((state_dir / "telemetry" / "weeks.json").read_text())
    assert saved["weeks"]["1"]["busy_s"] == 5 * PERIOD

    clock.now += 400  # back within three periods: the interval is measured, not a gap
    second = Running(state_dir, nv, clock)
    srv = await second.start()
    try:
        await second.samples(3)
        await srv.apply_event(ReportDue(week=1, reason="operator"))
        week = srv.weeks.aggregator.week(1) if srv.weeks is not None else None
        assert week is not None and week.busy_s == 5 * PERIOD + 400 + 3 * PERIOD
        report = (state_dir / "reports" / "week_01_status.md").read_text()
        assert "- GPU busy: 2.3 h (any GPU at 10% utilization or more)" in report
        assert "- Peak memory: 20.0 GiB of 80.0 GiB GPU memory (GPU 0)" in report
    finally:
        await second.stop()


async def test_the_gpu_idle_for_the_window_is_told_to_the_engine_and_forgotten_at_restart(
    state_dir: Path, nv: FakeNvml, clock: Clock
) -> None:
    """Idle samples for the stall window: the engine's gpu_idle_since is the span's start (one
    logged GpuIdle). After a restart it is cleared: the downtime is a gap."""
    nv.gpus[0].utilization = 0
    first = Running(state_dir, nv, clock)
    srv = await first.start()
    await first.samples(2)
    assert srv.weeks is not None and srv.weeks.told is None  # 2000 s idle: not the window yet
    await first.samples(1)
    with anyio.fail_after(10):
        while srv.daemon.state.gpu_idle_since != T0:  # the GpuIdle event, applied off this task
            await anyio.sleep(0.01)
    await first.samples(2)  # still idle: nothing new to tell
    await first.stop()

    second = Running(state_dir, nv, clock)
    srv = await second.start()
    try:
        assert srv.daemon.state.gpu_idle_since is None
    finally:
        await second.stop()
    store = EventStore.open(state_dir / "pixels.db", "FULL")
    try:
        idle = [r.body for r in store.events(after=0) if b"gpu_idle" in r.body]
    finally:
        store.close()
    assert len(idle) == 2  # told once, then cleared once at the restart


async def test_an_unreadable_weeks_file_is_set_aside_and_counting_starts_afresh(
    state_dir: Path, nv: FakeNvml, clock: Clock
) -> None:
    """Garbage in weeks.json never stops the daemon: it is kept as weeks.json.bad."""
    path = state_dir / "telemetry" / "weeks.json"
    path.parent.mkdir(parents=True)
    path.write_text("{half a file")
    running = Running(state_dir, nv, clock)
    srv = await running.start()
    try:
        assert (path.parent / "weeks.json.bad").read_text() == "{half a file"
        assert srv.weeks is not None and srv.weeks.aggregator.week(1) is not None
    finally:
        await running.stop()


async def test_with_telemetry_off_the_report_says_so(
    state_dir: Path, nv: FakeNvml, clock: Clock
) -> None:
    """--telemetry-interval 0: week 1's report has the section, saying telemetry is off."""
    running = Running(state_dir, nv, clock, telemetry=False)
    srv = await running.start()
    try:
        await srv.apply_event(ReportDue(week=1, reason="operator"))
        report = (state_dir / "reports" / "week_01_status.md").read_text()
        assert "## Telemetry\n\nTelemetry off: no samples this week" in report
    finally:
        await running.stop()
